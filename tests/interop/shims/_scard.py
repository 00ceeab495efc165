"""PC/SC transport for Py-GP on Linux: the native half of its `scard` wrapper, over pcsc-lite.

Py-GP 1.0.0 talks PC/SC through `pygp/connection/pcsc/scard.py`, a copy of pyscard's SWIG
wrapper whose native half, `_scard`, ships only as Windows `.pyd` files. When that import
fails, the wrapper falls back to a top-level module named `_scard`: this file. It implements,
with ctypes over `libpcsclite.so.1`, the calls Py-GP makes (establish/release context, list
readers, connect, status, transmit, disconnect, reconnect, error messages) with the same
signatures and return tuples as pyscard's `_scard`, plus the constants the wrapper copies at
import time.

It is transport only: APDUs go to the card byte for byte as Py-GP builds them, and responses
come back unchanged. Nothing here knows about GlobalPlatform.
"""

import ctypes
import ctypes.util

_lib_name = ctypes.util.find_library("pcsclite") or "libpcsclite.so.1"
_lib = ctypes.CDLL(_lib_name)

# pcsc-lite on Linux: DWORD is unsigned long, LONG is long, handles are LONG-sized.
_DWORD = ctypes.c_ulong
_LONG = ctypes.c_long
_HANDLE = ctypes.c_long


class _IoRequest(ctypes.Structure):
    _fields_ = [("dwProtocol", _DWORD), ("cbPciLength", _DWORD)]


class error(Exception):
    """Raised for misuse of this module (pyscard's `_scard.error`)."""


# --- constants (values from pcsc-lite's pcsclite.h and reader.h) ---------------------------

SCARD_S_SUCCESS = 0x00000000
_ERRORS = {
    "SCARD_F_INTERNAL_ERROR": 0x80100001,
    "SCARD_E_CANCELLED": 0x80100002,
    "SCARD_E_INVALID_HANDLE": 0x80100003,
    "SCARD_E_INVALID_PARAMETER": 0x80100004,
    "SCARD_E_INVALID_TARGET": 0x80100005,
    "SCARD_E_NO_MEMORY": 0x80100006,
    "SCARD_F_WAITED_TOO_LONG": 0x80100007,
    "SCARD_E_INSUFFICIENT_BUFFER": 0x80100008,
    "SCARD_E_UNKNOWN_READER": 0x80100009,
    "SCARD_E_TIMEOUT": 0x8010000A,
    "SCARD_E_SHARING_VIOLATION": 0x8010000B,
    "SCARD_E_NO_SMARTCARD": 0x8010000C,
    "SCARD_E_UNKNOWN_CARD": 0x8010000D,
    "SCARD_E_CANT_DISPOSE": 0x8010000E,
    "SCARD_E_PROTO_MISMATCH": 0x8010000F,
    "SCARD_E_NOT_READY": 0x80100010,
    "SCARD_E_INVALID_VALUE": 0x80100011,
    "SCARD_E_SYSTEM_CANCELLED": 0x80100012,
    "SCARD_F_COMM_ERROR": 0x80100013,
    "SCARD_F_UNKNOWN_ERROR": 0x80100014,
    "SCARD_E_INVALID_ATR": 0x80100015,
    "SCARD_E_NOT_TRANSACTED": 0x80100016,
    "SCARD_E_READER_UNAVAILABLE": 0x80100017,
    "SCARD_P_SHUTDOWN": 0x80100018,
    "SCARD_E_PCI_TOO_SMALL": 0x80100019,
    "SCARD_E_READER_UNSUPPORTED": 0x8010001A,
    "SCARD_E_DUPLICATE_READER": 0x8010001B,
    "SCARD_E_CARD_UNSUPPORTED": 0x8010001C,
    "SCARD_E_NO_SERVICE": 0x8010001D,
    "SCARD_E_SERVICE_STOPPED": 0x8010001E,
    "SCARD_E_UNEXPECTED": 0x8010001F,
    "SCARD_E_UNSUPPORTED_FEATURE": 0x8010001F,
    "SCARD_E_ICC_INSTALLATION": 0x80100020,
    "SCARD_E_ICC_CREATEORDER": 0x80100021,
    "SCARD_E_DIR_NOT_FOUND": 0x80100023,
    "SCARD_E_FILE_NOT_FOUND": 0x80100024,
    "SCARD_E_NO_DIR": 0x80100025,
    "SCARD_E_NO_FILE": 0x80100026,
    "SCARD_E_NO_ACCESS": 0x80100027,
    "SCARD_E_WRITE_TOO_MANY": 0x80100028,
    "SCARD_E_BAD_SEEK": 0x80100029,
    "SCARD_E_INVALID_CHV": 0x8010002A,
    "SCARD_E_UNKNOWN_RES_MNG": 0x8010002B,
    "SCARD_E_NO_SUCH_CERTIFICATE": 0x8010002C,
    "SCARD_E_CERTIFICATE_UNAVAILABLE": 0x8010002D,
    "SCARD_E_NO_READERS_AVAILABLE": 0x8010002E,
    "SCARD_E_COMM_DATA_LOST": 0x8010002F,
    "SCARD_E_NO_KEY_CONTAINER": 0x80100030,
    "SCARD_E_SERVER_TOO_BUSY": 0x80100031,
    "SCARD_W_UNSUPPORTED_CARD": 0x80100065,
    "SCARD_W_UNRESPONSIVE_CARD": 0x80100066,
    "SCARD_W_UNPOWERED_CARD": 0x80100067,
    "SCARD_W_RESET_CARD": 0x80100068,
    "SCARD_W_REMOVED_CARD": 0x80100069,
    "SCARD_W_SECURITY_VIOLATION": 0x8010006A,
    "SCARD_W_WRONG_CHV": 0x8010006B,
    "SCARD_W_CHV_BLOCKED": 0x8010006C,
    "SCARD_W_EOF": 0x8010006D,
    "SCARD_W_CANCELLED_BY_USER": 0x8010006E,
    "SCARD_W_CARD_NOT_AUTHENTICATED": 0x8010006F,
}
globals().update(_ERRORS)
# Windows error codes pyscard exports on every platform.
ERROR_ALREADY_EXISTS = 183
ERROR_INVALID_HANDLE = 6

SCARD_SCOPE_USER = 0x0000
SCARD_SCOPE_TERMINAL = 0x0001
SCARD_SCOPE_SYSTEM = 0x0002

SCARD_SHARE_EXCLUSIVE = 0x0001
SCARD_SHARE_SHARED = 0x0002
SCARD_SHARE_DIRECT = 0x0003

SCARD_LEAVE_CARD = 0x0000
SCARD_RESET_CARD = 0x0001
SCARD_UNPOWER_CARD = 0x0002
SCARD_EJECT_CARD = 0x0003

SCARD_STATE_UNAWARE = 0x0000
SCARD_STATE_IGNORE = 0x0001
SCARD_STATE_CHANGED = 0x0002
SCARD_STATE_UNKNOWN = 0x0004
SCARD_STATE_UNAVAILABLE = 0x0008
SCARD_STATE_EMPTY = 0x0010
SCARD_STATE_PRESENT = 0x0020
SCARD_STATE_ATRMATCH = 0x0040
SCARD_STATE_EXCLUSIVE = 0x0080
SCARD_STATE_INUSE = 0x0100
SCARD_STATE_MUTE = 0x0200
SCARD_STATE_UNPOWERED = 0x0400

SCARD_PROTOCOL_UNDEFINED = 0x0000
SCARD_PROTOCOL_UNSET = SCARD_PROTOCOL_UNDEFINED
SCARD_PROTOCOL_T0 = 0x0001
SCARD_PROTOCOL_T1 = 0x0002
SCARD_PROTOCOL_RAW = 0x0004
SCARD_PROTOCOL_T15 = 0x0008
SCARD_PROTOCOL_ANY = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1
SCARD_PROTOCOL_Tx = SCARD_PROTOCOL_ANY
SCARD_PROTOCOL_DEFAULT = SCARD_PROTOCOL_ANY
SCARD_PROTOCOL_OPTIMAL = SCARD_PROTOCOL_ANY

# pyscard passes the PCI as a small integer and maps it to pcsc-lite's structures.
SCARD_PCI_T0 = 1
SCARD_PCI_T1 = 2
SCARD_PCI_RAW = 4
_PCI = {
    SCARD_PCI_T0: _IoRequest.in_dll(_lib, "g_rgSCardT0Pci"),
    SCARD_PCI_T1: _IoRequest.in_dll(_lib, "g_rgSCardT1Pci"),
    SCARD_PCI_RAW: _IoRequest.in_dll(_lib, "g_rgSCardRawPci"),
}

SCARD_PROVIDER_PRIMARY = 1
SCARD_PROVIDER_CSP = 2

INFINITE = 0xFFFFFFFF
resourceManager = "pcsclite"
resourceManagerSubType = "pcsclite-linux"


def _attr(cls, tag):
    return (cls << 16) | tag


SCARD_ATTR_VENDOR_NAME = _attr(1, 0x0100)
SCARD_ATTR_VENDOR_IFD_TYPE = _attr(1, 0x0101)
SCARD_ATTR_VENDOR_IFD_VERSION = _attr(1, 0x0102)
SCARD_ATTR_VENDOR_IFD_SERIAL_NO = _attr(1, 0x0103)
SCARD_ATTR_CHANNEL_ID = _attr(2, 0x0110)
SCARD_ATTR_DEFAULT_CLK = _attr(3, 0x0121)
SCARD_ATTR_MAX_CLK = _attr(3, 0x0122)
SCARD_ATTR_DEFAULT_DATA_RATE = _attr(3, 0x0123)
SCARD_ATTR_MAX_DATA_RATE = _attr(3, 0x0124)
SCARD_ATTR_MAX_IFSD = _attr(3, 0x0125)
SCARD_ATTR_POWER_MGMT_SUPPORT = _attr(4, 0x0131)
SCARD_ATTR_USER_TO_CARD_AUTH_DEVICE = _attr(5, 0x0140)
SCARD_ATTR_USER_AUTH_INPUT_DEVICE = _attr(5, 0x0142)
SCARD_ATTR_CHARACTERISTICS = _attr(6, 0x0150)
SCARD_ATTR_CURRENT_PROTOCOL_TYPE = _attr(8, 0x0201)
SCARD_ATTR_CURRENT_CLK = _attr(8, 0x0202)
SCARD_ATTR_CURRENT_F = _attr(8, 0x0203)
SCARD_ATTR_CURRENT_D = _attr(8, 0x0204)
SCARD_ATTR_CURRENT_N = _attr(8, 0x0205)
SCARD_ATTR_CURRENT_W = _attr(8, 0x0206)
SCARD_ATTR_CURRENT_IFSC = _attr(8, 0x0207)
SCARD_ATTR_CURRENT_IFSD = _attr(8, 0x0208)
SCARD_ATTR_CURRENT_BWT = _attr(8, 0x0209)
SCARD_ATTR_CURRENT_CWT = _attr(8, 0x020A)
SCARD_ATTR_CURRENT_EBC_ENCODING = _attr(8, 0x020B)
SCARD_ATTR_EXTENDED_BWT = _attr(8, 0x020C)
SCARD_ATTR_ICC_PRESENCE = _attr(9, 0x0300)
SCARD_ATTR_ICC_INTERFACE_STATUS = _attr(9, 0x0301)
SCARD_ATTR_CURRENT_IO_STATE = _attr(9, 0x0302)
SCARD_ATTR_ATR_STRING = _attr(9, 0x0303)
SCARD_ATTR_ICC_TYPE_PER_ATR = _attr(9, 0x0304)
SCARD_ATTR_ESC_RESET = _attr(7, 0xA000)
SCARD_ATTR_ESC_CANCEL = _attr(7, 0xA003)
SCARD_ATTR_ESC_AUTHREQUEST = _attr(7, 0xA005)
SCARD_ATTR_MAXINPUT = _attr(7, 0xA007)
SCARD_ATTR_DEVICE_UNIT = _attr(0x7FFF, 0x0001)
SCARD_ATTR_DEVICE_IN_USE = _attr(0x7FFF, 0x0002)
SCARD_ATTR_DEVICE_FRIENDLY_NAME_A = _attr(0x7FFF, 0x0003)
SCARD_ATTR_DEVICE_SYSTEM_NAME_A = _attr(0x7FFF, 0x0004)
SCARD_ATTR_DEVICE_FRIENDLY_NAME_W = _attr(0x7FFF, 0x0005)
SCARD_ATTR_DEVICE_SYSTEM_NAME_W = _attr(0x7FFF, 0x0006)
SCARD_ATTR_SUPRESS_T1_IFS_REQUEST = _attr(0x7FFF, 0x0007)

_MAX_BUFFER = 65538 + 2  # extended APDU response plus status word

# --- function prototypes ---------------------------------------------------------------------

_lib.SCardEstablishContext.argtypes = [
    _DWORD,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(_HANDLE),
]
_lib.SCardEstablishContext.restype = _LONG
_lib.SCardReleaseContext.argtypes = [_HANDLE]
_lib.SCardReleaseContext.restype = _LONG
_lib.SCardIsValidContext.argtypes = [_HANDLE]
_lib.SCardIsValidContext.restype = _LONG
_lib.SCardListReaders.argtypes = [
    _HANDLE,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.POINTER(_DWORD),
]
_lib.SCardListReaders.restype = _LONG
_lib.SCardConnect.argtypes = [
    _HANDLE,
    ctypes.c_char_p,
    _DWORD,
    _DWORD,
    ctypes.POINTER(_HANDLE),
    ctypes.POINTER(_DWORD),
]
_lib.SCardConnect.restype = _LONG
_lib.SCardReconnect.argtypes = [_HANDLE, _DWORD, _DWORD, _DWORD, ctypes.POINTER(_DWORD)]
_lib.SCardReconnect.restype = _LONG
_lib.SCardDisconnect.argtypes = [_HANDLE, _DWORD]
_lib.SCardDisconnect.restype = _LONG
_lib.SCardStatus.argtypes = [
    _HANDLE,
    ctypes.c_char_p,
    ctypes.POINTER(_DWORD),
    ctypes.POINTER(_DWORD),
    ctypes.POINTER(_DWORD),
    ctypes.c_char_p,
    ctypes.POINTER(_DWORD),
]
_lib.SCardStatus.restype = _LONG
_lib.SCardTransmit.argtypes = [
    _HANDLE,
    ctypes.POINTER(_IoRequest),
    ctypes.c_char_p,
    _DWORD,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.POINTER(_DWORD),
]
_lib.SCardTransmit.restype = _LONG
_lib.pcsc_stringify_error.argtypes = [_LONG]
_lib.pcsc_stringify_error.restype = ctypes.c_char_p


def _ret(code):
    return code & 0xFFFFFFFF


def SCardEstablishContext(dwScope):
    ctx = _HANDLE(0)
    rc = _lib.SCardEstablishContext(dwScope, None, None, ctypes.byref(ctx))
    return _ret(rc), ctx.value


def SCardReleaseContext(hcontext):
    return _ret(_lib.SCardReleaseContext(hcontext))


def SCardIsValidContext(hcontext):
    return _ret(_lib.SCardIsValidContext(hcontext))


def SCardListReaders(hcontext, readergroups):
    """Reader names as bytes, as the pyscard build Py-GP 1.0.0 was written against returned
    them (Py-GP calls `.decode()` on each)."""
    size = _DWORD(0)
    rc = _ret(_lib.SCardListReaders(hcontext, None, None, ctypes.byref(size)))
    if rc != SCARD_S_SUCCESS:
        return rc, []
    buf = ctypes.create_string_buffer(size.value)
    rc = _ret(_lib.SCardListReaders(hcontext, None, buf, ctypes.byref(size)))
    if rc != SCARD_S_SUCCESS:
        return rc, []
    names = [n for n in buf.raw[: size.value].split(b"\0") if n]
    return rc, names


def _name(reader):
    return reader.encode() if isinstance(reader, str) else bytes(reader)


def SCardConnect(hcontext, readername, dwShareMode, dwPreferredProtocols):
    card = _HANDLE(0)
    proto = _DWORD(0)
    rc = _lib.SCardConnect(
        hcontext,
        _name(readername),
        dwShareMode,
        dwPreferredProtocols,
        ctypes.byref(card),
        ctypes.byref(proto),
    )
    return _ret(rc), card.value, proto.value


def SCardReconnect(hcard, dwShareMode, dwPreferredProtocols, dwInitialization):
    proto = _DWORD(0)
    rc = _lib.SCardReconnect(
        hcard, dwShareMode, dwPreferredProtocols, dwInitialization, ctypes.byref(proto)
    )
    return _ret(rc), proto.value


def SCardDisconnect(hcard, dwDisposition):
    return _ret(_lib.SCardDisconnect(hcard, dwDisposition))


def SCardStatus(hcard):
    name = ctypes.create_string_buffer(512)
    name_len = _DWORD(len(name))
    state = _DWORD(0)
    proto = _DWORD(0)
    atr = ctypes.create_string_buffer(64)
    atr_len = _DWORD(len(atr))
    rc = _lib.SCardStatus(
        hcard,
        name,
        ctypes.byref(name_len),
        ctypes.byref(state),
        ctypes.byref(proto),
        atr,
        ctypes.byref(atr_len),
    )
    reader = name.value.decode(errors="replace")
    return _ret(rc), reader, state.value, proto.value, list(atr.raw[: atr_len.value])


def SCardTransmit(hcard, pioSendPci, apducommand):
    if pioSendPci not in _PCI:
        raise error("unknown PCI %r" % (pioSendPci,))
    command = bytes(apducommand)
    response = ctypes.create_string_buffer(_MAX_BUFFER)
    response_len = _DWORD(len(response))
    rc = _ret(
        _lib.SCardTransmit(
            hcard,
            ctypes.byref(_PCI[pioSendPci]),
            command,
            len(command),
            None,
            response,
            ctypes.byref(response_len),
        )
    )
    if rc != SCARD_S_SUCCESS:
        return rc, []
    return rc, list(response.raw[: response_len.value])


def SCardGetErrorMessage(lErrCode):
    return _lib.pcsc_stringify_error(ctypes.c_long(lErrCode).value).decode()


def SCARD_CTL_CODE(code):
    return 0x42000000 + code
