"""A throw-away HAProxy in front of real replicas: the two paths the issue names.

- the ALB path: L7, per request; TLS with ALPN h2 (and an h2c listener), ``proto h2`` to the
  replicas' gRPC ports and HTTP ports;
- the Service path: L4, ``balance random`` per TCP connection (kube-proxy's iptables mode).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import stop
from tests.support import accepts, free_port, wait_until


@dataclass
class Balancer:
    proc: subprocess.Popen[bytes]
    alb_tls: int  # TLS, ALPN h2 and http/1.1, L7 per request, to the replicas' gRPC ports
    alb_h2c: int  # h2c with prior knowledge, L7 per request, to the replicas' gRPC ports
    alb_http: int  # TLS, ALPN h2, L7 per request, to the replicas' HTTP ports (h2c behind)
    service: int  # TCP, balance random, per connection, to the replicas' gRPC ports

    def stop(self) -> None:
        stop(self.proc)


def start_balancer(
    tmp: Path, grpc_ports: list[int], http_ports: list[int], server_pem: Path
) -> Balancer:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    ports = [free_port() for _ in range(4)]
    grpc_servers = "\n".join(
        f"  server r{k} 127.0.0.1:{p} proto h2 check inter 200ms" for k, p in enumerate(grpc_ports)
    )
    http_servers = "\n".join(
        f"  server r{k} 127.0.0.1:{p} proto h2" for k, p in enumerate(http_ports)
    )
    tcp_servers = "\n".join(f"  server r{k} 127.0.0.1:{p}" for k, p in enumerate(grpc_ports))
    config = f"""
global
  maxconn 2000
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend alb_grpc
  mode http
  bind 127.0.0.1:{ports[0]} ssl crt {server_pem} alpn h2,http/1.1
  bind 127.0.0.1:{ports[1]} proto h2
  default_backend grpc_h2
backend grpc_h2
  mode http
  balance roundrobin
{grpc_servers}
frontend alb_http
  mode http
  bind 127.0.0.1:{ports[2]} ssl crt {server_pem} alpn h2,http/1.1
  default_backend http_h2
backend http_h2
  mode http
  balance roundrobin
{http_servers}
frontend service
  mode tcp
  bind 127.0.0.1:{ports[3]}
  default_backend grpc_tcp
backend grpc_tcp
  mode tcp
  balance random
{tcp_servers}
"""
    path = tmp / "haproxy.cfg"
    path.write_text(config)
    log = (tmp / "haproxy.log").open("wb")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=log, stderr=log)
    balancer = Balancer(proc, *ports)
    try:
        wait_until(
            lambda: all(accepts("127.0.0.1", port) for port in ports),
            "haproxy listening",
            seconds=10,
            proc=proc,
            log=tmp / "haproxy.log",
        )
    except AssertionError:
        balancer.stop()
        raise
    return balancer
