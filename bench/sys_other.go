//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"time"
)

var errNotLinux = errors.New("needs Linux")

// cpuTime needs /proc: not available here.
func cpuTime(pid int) (time.Duration, error) { return 0, errNotLinux }

// allowedCPUs is unknown here: pinning is off.
func allowedCPUs() ([]int, error) { return nil, errNotLinux }

func pinProcess(pid int, cpus []int) error { return errNotLinux }

func setChildAttrs(cmd *exec.Cmd) {}
