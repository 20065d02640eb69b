package main

import "syscall"

var hangup = syscall.SIGHUP
