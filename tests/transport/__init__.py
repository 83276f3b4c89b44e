"""Tests of wsguard.transport: the protocol class and the server, on real sockets."""
