from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_KIND_UNSPECIFIED: _ClassVar[SessionKind]
    SESSION_KIND_DKG: _ClassVar[SessionKind]
    SESSION_KIND_REFRESH: _ClassVar[SessionKind]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_RUNNING: _ClassVar[SessionState]
    SESSION_STATE_FINISHED: _ClassVar[SessionState]
    SESSION_STATE_ABORTED: _ClassVar[SessionState]
SESSION_KIND_UNSPECIFIED: SessionKind
SESSION_KIND_DKG: SessionKind
SESSION_KIND_REFRESH: SessionKind
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_RUNNING: SessionState
SESSION_STATE_FINISHED: SessionState
SESSION_STATE_ABORTED: SessionState

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "signing_key", "encryption_key", "version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    signing_key: bytes
    encryption_key: bytes
    version: str
    def __init__(self, node_id: _Optional[int] = ..., signing_key: _Optional[bytes] = ..., encryption_key: _Optional[bytes] = ..., version: _Optional[str] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("session_id", "kind", "key_id", "scheme", "parties", "threshold")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    kind: SessionKind
    key_id: str
    scheme: str
    parties: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    def __init__(self, session_id: _Optional[bytes] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., key_id: _Optional[str] = ..., scheme: _Optional[str] = ..., parties: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("session_id", "envelopes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session_id: _Optional[bytes] = ..., envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SessionUpdate(_message.Message):
    __slots__ = ("state", "envelopes", "public_key_package", "error_code", "culprits", "error_message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    CULPRITS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    public_key_package: bytes
    error_code: str
    culprits: _containers.RepeatedScalarFieldContainer[int]
    error_message: str
    def __init__(self, state: _Optional[_Union[SessionState, str]] = ..., envelopes: _Optional[_Iterable[bytes]] = ..., public_key_package: _Optional[bytes] = ..., error_code: _Optional[str] = ..., culprits: _Optional[_Iterable[int]] = ..., error_message: _Optional[str] = ...) -> None: ...

class PrepareNoncesRequest(_message.Message):
    __slots__ = ("key_id", "count")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    count: int
    def __init__(self, key_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class NonceCommitment(_message.Message):
    __slots__ = ("nonce_id", "commitments")
    NONCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    nonce_id: str
    commitments: bytes
    def __init__(self, nonce_id: _Optional[str] = ..., commitments: _Optional[bytes] = ...) -> None: ...

class PrepareNoncesResponse(_message.Message):
    __slots__ = ("nonces",)
    NONCES_FIELD_NUMBER: _ClassVar[int]
    nonces: _containers.RepeatedCompositeFieldContainer[NonceCommitment]
    def __init__(self, nonces: _Optional[_Iterable[_Union[NonceCommitment, _Mapping]]] = ...) -> None: ...

class SignShareRequest(_message.Message):
    __slots__ = ("request_id", "key_id", "signing_package", "nonce_id", "derivation_path")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    NONCE_ID_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key_id: str
    signing_package: bytes
    nonce_id: str
    derivation_path: str
    def __init__(self, request_id: _Optional[str] = ..., key_id: _Optional[str] = ..., signing_package: _Optional[bytes] = ..., nonce_id: _Optional[str] = ..., derivation_path: _Optional[str] = ...) -> None: ...

class SignShareResponse(_message.Message):
    __slots__ = ("signature_share",)
    SIGNATURE_SHARE_FIELD_NUMBER: _ClassVar[int]
    signature_share: bytes
    def __init__(self, signature_share: _Optional[bytes] = ...) -> None: ...
