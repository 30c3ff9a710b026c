"""ECR: where the podtally image lives. Tags are immutable and every push is scanned."""

from __future__ import annotations

import json

import pulumi_aws as aws

from podtally_infra.config import Settings

LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "drop untagged layers after a week",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "keep the 20 most recent tagged images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"},
        },
    ]
}


def image_reference(account_id: str, settings: Settings) -> str:
    """The image the Deployment runs, known before the repository exists (plain, not an Output).

    ECR repository URLs are ``<account>.dkr.ecr.<region>.amazonaws.com/<name>``; the tests check
    that this matches the repository's own ``repository_url``.
    """
    return (
        f"{account_id}.dkr.ecr.{settings.region}.amazonaws.com/{settings.app_name}:"
        f"{settings.image_tag}"
    )


def build(settings: Settings) -> aws.ecr.Repository:
    repo = aws.ecr.Repository(
        settings.app_name,
        name=settings.app_name,
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration={"scan_on_push": True},
        force_delete=settings.ecr_force_delete,
    )
    aws.ecr.LifecyclePolicy(settings.app_name, repository=repo.name, policy=json.dumps(LIFECYCLE))
    return repo
