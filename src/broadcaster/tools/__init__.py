"""Operator tools: the command-line clients of a running server (`console`: `broadcasts list`,
`broadcasts watch`, `channels sync`) and `broadcaster demo` (`demo`: the LINE emulator, the
service and a client in one process), with their progress bars and tables (`progress`).

The tools talk to the service only through `broadcaster_client`, the Python client other
services use: its `connect`, stubs, `BroadcasterError`, paging and retry. They are not part of the
service: the service never imports them, and they import the service's modules only to start it
in-process for the demo.
"""
