"""ACM: a certificate for the hostname, validated by DNS records in the Route53 zone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from podtally_infra.config import Settings


@dataclass(frozen=True)
class Certificate:
    zone_id: str
    validation_records: list[aws.route53.Record]
    validated_arn: pulumi.Output[str]


def build(settings: Settings) -> Certificate:
    zone = aws.route53.get_zone(name=settings.route53_zone, private_zone=False)
    cert = aws.acm.Certificate(
        settings.app_name,
        domain_name=settings.hostname,
        validation_method="DNS",
        tags={"Name": settings.hostname},
    )
    # One domain, so one validation option; picked by domain name, not by position.
    option = cert.domain_validation_options.apply(
        lambda options: next(o for o in options if o.domain_name == settings.hostname)
    )

    def field(name: str) -> pulumi.Output[str]:
        def pick(o: aws.acm.outputs.CertificateDomainValidationOption) -> str:
            value = getattr(o, name)
            if not value:
                raise pulumi.RunError(f"ACM gave no {name} for {settings.hostname}")
            return str(value)

        return option.apply(pick)

    record = aws.route53.Record(
        f"{settings.app_name}-cert-validation",
        zone_id=zone.zone_id,
        name=field("resource_record_name"),
        type=field("resource_record_type"),
        records=[field("resource_record_value")],
        ttl=60,
        allow_overwrite=True,
    )
    validation = aws.acm.CertificateValidation(
        settings.app_name,
        certificate_arn=cert.arn,
        validation_record_fqdns=[record.fqdn],
    )
    return Certificate(zone.zone_id, [record], validation.certificate_arn)
