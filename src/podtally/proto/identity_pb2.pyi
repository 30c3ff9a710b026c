from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("interval_ms", "count")
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    count: int
    def __init__(self, interval_ms: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class IdentityReply(_message.Message):
    __slots__ = ("pod", "node", "namespace", "ip", "zone", "version", "sequence")
    POD_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    pod: str
    node: str
    namespace: str
    ip: str
    zone: str
    version: str
    sequence: int
    def __init__(self, pod: _Optional[str] = ..., node: _Optional[str] = ..., namespace: _Optional[str] = ..., ip: _Optional[str] = ..., zone: _Optional[str] = ..., version: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...
