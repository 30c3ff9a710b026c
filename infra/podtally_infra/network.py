"""The VPC: public, private and intra subnets in each zone, an internet gateway, NAT and routes.

Layout of a /16 (a /17 or /18 shrinks every tier alike):
  private  /19 per zone  (nodes and pods: the VPC CNI gives every pod a VPC address)
  public   /22 per zone  (the ALB and the NAT gateways)
  intra    /26 per zone  (the EKS control plane's network interfaces; no route out)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from podtally_infra.config import Settings


@dataclass(frozen=True)
class SubnetPlan:
    zone: str
    private: str
    public: str
    intra: str


def plan_subnets(vpc_cidr: str, zones: list[str]) -> list[SubnetPlan]:
    """Carve the VPC CIDR into three tiers, one subnet per zone in each (pure, unit-tested)."""
    vpc = ipaddress.ip_network(vpc_cidr)
    if not isinstance(vpc, ipaddress.IPv4Network):
        raise ValueError(f"{vpc_cidr} is not IPv4")
    blocks = list(vpc.subnets(prefixlen_diff=3))  # eight equal blocks
    private = blocks[:4]
    public = list(blocks[4].subnets(prefixlen_diff=3))
    intra = list(blocks[5].subnets(prefixlen_diff=7))
    return [
        SubnetPlan(zone, str(private[i]), str(public[i]), str(intra[i]))
        for i, zone in enumerate(zones)
    ]


@dataclass(frozen=True)
class Network:
    vpc: aws.ec2.Vpc
    zones: list[str]
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    intra_subnets: list[aws.ec2.Subnet]
    nat_gateways: list[aws.ec2.NatGateway]


# Zone IDs in which EKS cannot place a cluster (AWS "network requirements" page; eksctl and
# terraform modules avoid the same IDs). Zone *names* map to different IDs in every account, so
# the exclusion has to be by ID: us-east-1e here may be use1-az3 there.
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


def resolve_zones(settings: Settings) -> list[str]:
    """An explicit list from config, or the first N zones that EKS supports (sorted, stable)."""
    if isinstance(settings.zones, tuple):
        return list(settings.zones)
    available = aws.get_availability_zones(
        state="available",
        exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
    )
    names = sorted(available.names)
    if len(names) < settings.zones:
        raise pulumi.RunError(
            f"{settings.region} offers {len(names)} zones that EKS supports, podtally:zones asks "
            f"for {settings.zones}"
        )
    return names[: settings.zones]


def build(settings: Settings) -> Network:
    name = settings.cluster_name
    cluster_tag = {f"kubernetes.io/cluster/{name}": "shared"}
    zones = resolve_zones(settings)

    vpc = aws.ec2.Vpc(
        f"{name}-vpc",
        cidr_block=settings.vpc_cidr,
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags={"Name": f"{name}-vpc"},
    )
    # The default security group of a new VPC allows all traffic between its members: close it.
    aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags={"Name": "unused"})

    igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"})
    public_rt = aws.ec2.RouteTable(
        f"{name}-public",
        vpc_id=vpc.id,
        routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
        tags={"Name": f"{name}-public"},
    )
    intra_rt = aws.ec2.RouteTable(f"{name}-intra", vpc_id=vpc.id, tags={"Name": f"{name}-intra"})

    public_subnets: list[aws.ec2.Subnet] = []
    private_subnets: list[aws.ec2.Subnet] = []
    intra_subnets: list[aws.ec2.Subnet] = []
    for plan in plan_subnets(settings.vpc_cidr, zones):
        public = aws.ec2.Subnet(
            f"{name}-public-{plan.zone}",
            vpc_id=vpc.id,
            cidr_block=plan.public,
            availability_zone=plan.zone,
            map_public_ip_on_launch=False,
            tags={
                "Name": f"{name}-public-{plan.zone}",
                "kubernetes.io/role/elb": "1",
                **cluster_tag,
            },
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-{plan.zone}", subnet_id=public.id, route_table_id=public_rt.id
        )
        private = aws.ec2.Subnet(
            f"{name}-private-{plan.zone}",
            vpc_id=vpc.id,
            cidr_block=plan.private,
            availability_zone=plan.zone,
            tags={
                "Name": f"{name}-private-{plan.zone}",
                "kubernetes.io/role/internal-elb": "1",
                **cluster_tag,
            },
        )
        intra = aws.ec2.Subnet(
            f"{name}-intra-{plan.zone}",
            vpc_id=vpc.id,
            cidr_block=plan.intra,
            availability_zone=plan.zone,
            tags={"Name": f"{name}-intra-{plan.zone}"},
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-intra-{plan.zone}", subnet_id=intra.id, route_table_id=intra_rt.id
        )
        public_subnets.append(public)
        private_subnets.append(private)
        intra_subnets.append(intra)

    # NAT: one gateway in the first zone (cheap, one zone's failure cuts egress for all), or
    # one per zone (each zone's nodes leave through their own zone).
    nat_zones = zones if settings.nat_mode == "per-zone" else zones[:1]
    nat_gateways: list[aws.ec2.NatGateway] = []
    for index, zone in enumerate(nat_zones):
        eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags={"Name": f"{name}-nat-{zone}"})
        nat_gateways.append(
            aws.ec2.NatGateway(
                f"{name}-nat-{zone}",
                allocation_id=eip.id,
                subnet_id=public_subnets[index].id,
                tags={"Name": f"{name}-nat-{zone}"},
                opts=pulumi.ResourceOptions(depends_on=[igw]),
            )
        )

    for index, (zone, private) in enumerate(zip(zones, private_subnets, strict=True)):
        nat = nat_gateways[index if settings.nat_mode == "per-zone" else 0]
        private_rt = aws.ec2.RouteTable(
            f"{name}-private-{zone}",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags={"Name": f"{name}-private-{zone}"},
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-private-{zone}", subnet_id=private.id, route_table_id=private_rt.id
        )

    return Network(vpc, zones, public_subnets, private_subnets, intra_subnets, nat_gateways)
