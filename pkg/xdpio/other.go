// SPDX-License-Identifier: MIT

//go:build !linux

package xdpio

import (
	"errors"
	"net/netip"
)

// ErrUnsupported is returned by Attach where AF_XDP does not exist.
var ErrUnsupported = errors.New("xdpio: AF_XDP needs Linux")

// Group is the steering program and its Conns; only Linux has them.
type Group struct{}

// Attach fails off Linux.
func Attach(Config) (*Group, error) { return nil, ErrUnsupported }

// Conns returns nothing off Linux.
func (*Group) Conns() []*Conn { return nil }

// Mode is ModeAuto off Linux.
func (*Group) Mode() Mode { return ModeAuto }

// Interface is empty off Linux.
func (*Group) Interface() string { return "" }

// Close does nothing off Linux.
func (*Group) Close() error { return nil }

// Conn is a receive queue's socket; only Linux has them.
type Conn struct{}

// Queue is 0 off Linux.
func (*Conn) Queue() int { return 0 }

// Addrs is empty off Linux.
func (*Conn) Addrs() []netip.Addr { return nil }

// ReadBatch fails off Linux.
func (*Conn) ReadBatch([]Message) (int, error) { return 0, ErrUnsupported }

// WriteBatch fails off Linux.
func (*Conn) WriteBatch([]Message) (int, error) { return 0, ErrUnsupported }

// Stats is empty off Linux.
func (*Conn) Stats() Stats { return Stats{} }

// Close does nothing off Linux.
func (*Conn) Close() error { return nil }
