# The compiled build's types for h1.py (an augmenting .pxd: Cython reads it
# beside h1.py; the pure build never sees it). RequestParser, _Trailers and Request
# become extension types with C fields: llhttp's callbacks and the checks
# read and write them without a dict or a descriptor.

cdef class _Trailers:
    cdef public Py_ssize_t size
    cdef public Py_ssize_t limit


cdef class RequestParser:
    cdef object __weakref__
    cdef object _sink
    cdef bint _h2c
    cdef object _limit_request_body
    cdef object _body_size
    cdef Py_ssize_t _limit_request_line
    cdef Py_ssize_t _limit_header_size
    cdef object _parser
    cdef object _request
    cdef public bint in_head
    cdef public bint data_after_close
    cdef Py_ssize_t _head_bytes
    cdef Py_ssize_t _feed_bytes
    cdef bytes _url
    cdef object _headers
    cdef _Trailers _trailers
    cdef object _host
    cdef object _valid_host
    cdef bint _connection
    cdef bint _special
    cdef bint _expect
    cdef object _transfer_encoding
    cdef object _upgrade
    cdef object _content_length
    cdef bint _forwarded
    cdef object _replay
    cdef bint _replaying
    cdef bytes _head_tail
    cdef bint _fresh
    cdef bytes _line
    cdef Py_ssize_t _at


# A request's fields as C fields: set once per request in __init__ without a
# descriptor lookup each (the pure build has the same names in __slots__).
cdef class Request:
    cdef public object method
    cdef public object target
    cdef public object path
    cdef public object raw_path
    cdef public object query_string
    cdef public object http_version
    cdef public object headers
    cdef public object keep_alive
    cdef public object expect_continue
    cdef public object upgrade
    cdef public object forwarded
    cdef public object body
    cdef public object buffered
    cdef public object complete
