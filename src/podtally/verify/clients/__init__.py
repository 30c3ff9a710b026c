"""Clients beyond the HTTP/1.1 engine (:mod:`podtally.verify.probe`): HTTP/2 and gRPC.

Each one is an engine with the same surface as :class:`podtally.verify.probe.Engine`
(``await run()``, ``started``, ``summary()``) and emits the same
:class:`~podtally.verify.probe.Observation` records, so the tally, the decision and the reports
work unchanged for every protocol.
"""
