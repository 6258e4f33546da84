from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEME_UNSPECIFIED: _ClassVar[Scheme]
    SCHEME_ECDSA_SECP256K1: _ClassVar[Scheme]
    SCHEME_EDDSA_ED25519: _ClassVar[Scheme]
    SCHEME_SCHNORR_BIP340: _ClassVar[Scheme]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_PENDING: _ClassVar[RequestState]
    REQUEST_STATE_SIGNING: _ClassVar[RequestState]
    REQUEST_STATE_SUCCEEDED: _ClassVar[RequestState]
    REQUEST_STATE_FAILED: _ClassVar[RequestState]
SCHEME_UNSPECIFIED: Scheme
SCHEME_ECDSA_SECP256K1: Scheme
SCHEME_EDDSA_ED25519: Scheme
SCHEME_SCHNORR_BIP340: Scheme
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_PENDING: RequestState
REQUEST_STATE_SIGNING: RequestState
REQUEST_STATE_SUCCEEDED: RequestState
REQUEST_STATE_FAILED: RequestState

class CreateKeyRequest(_message.Message):
    __slots__ = ("scheme", "request_id")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    scheme: Scheme
    request_id: str
    def __init__(self, scheme: _Optional[_Union[Scheme, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("key_id", "scheme", "public_key", "threshold", "participants", "chain_code", "create_time")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    scheme: Scheme
    public_key: bytes
    threshold: int
    participants: int
    chain_code: bytes
    create_time: str
    def __init__(self, key_id: _Optional[str] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., public_key: _Optional[bytes] = ..., threshold: _Optional[int] = ..., participants: _Optional[int] = ..., chain_code: _Optional[bytes] = ..., create_time: _Optional[str] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("name", "done", "key", "error_code", "error_message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    done: bool
    key: Key
    error_code: str
    error_message: str
    def __init__(self, name: _Optional[str] = ..., done: _Optional[bool] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WaitOperationRequest(_message.Message):
    __slots__ = ("name", "timeout_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    timeout_seconds: float
    def __init__(self, name: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...

class DeriveKeyRequest(_message.Message):
    __slots__ = ("key_id", "path")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    path: str
    def __init__(self, key_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class DerivedKey(_message.Message):
    __slots__ = ("key_id", "path", "public_key", "chain_code")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHAIN_CODE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    path: str
    public_key: bytes
    chain_code: bytes
    def __init__(self, key_id: _Optional[str] = ..., path: _Optional[str] = ..., public_key: _Optional[bytes] = ..., chain_code: _Optional[bytes] = ...) -> None: ...

class RequestSignatureRequest(_message.Message):
    __slots__ = ("request_id", "key_id", "path", "digest", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key_id: str
    path: str
    digest: bytes
    message: bytes
    def __init__(self, request_id: _Optional[str] = ..., key_id: _Optional[str] = ..., path: _Optional[str] = ..., digest: _Optional[bytes] = ..., message: _Optional[bytes] = ...) -> None: ...

class SignatureRequest(_message.Message):
    __slots__ = ("request_id", "key_id", "path", "state", "signature", "public_key", "recovery_id", "error_code", "error_message", "signers")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SIGNERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key_id: str
    path: str
    state: RequestState
    signature: bytes
    public_key: bytes
    recovery_id: int
    error_code: str
    error_message: str
    signers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request_id: _Optional[str] = ..., key_id: _Optional[str] = ..., path: _Optional[str] = ..., state: _Optional[_Union[RequestState, str]] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., recovery_id: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., signers: _Optional[_Iterable[int]] = ...) -> None: ...

class GetSignatureRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class WaitSignatureRequestRequest(_message.Message):
    __slots__ = ("request_id", "timeout_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    timeout_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...
