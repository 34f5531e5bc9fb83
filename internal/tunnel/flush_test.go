// SPDX-License-Identifier: MIT

package tunnel

import (
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/miredo-go/miredo/pkg/udpio"
)

type fakeSender struct {
	sent int
	fail int // refuse this many from the end
	err  error
}

func (s *fakeSender) WriteBatch(msgs []udpio.Message) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(msgs) - s.fail
	s.sent += n
	if s.fail > 0 {
		return n, errors.New("refused")
	}
	return n, nil
}

type fakeDev struct {
	refuse  map[int]bool // by packet content's first byte
	written []byte
	closed  bool
}

func (d *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed {
		return 0, net.ErrClosed
	}
	for i, b := range bufs {
		if d.refuse[int(b[0])] {
			return i, errors.New("no route")
		}
		d.written = append(d.written, b[0])
	}
	return len(bufs), nil
}

func TestFlush(t *testing.T) {
	var mu sync.Mutex
	var o Out
	o.UDP = append(o.UDP, udpio.Message{Buf: []byte{1}, N: 1}, udpio.Message{Buf: []byte{2}, N: 1})
	o.Local = append(o.Local, []byte{10}, []byte{11}, []byte{12}, []byte{13})
	s := &fakeSender{fail: 1}
	d := &fakeDev{refuse: map[int]bool{11: true, 13: true}}
	f := o.Flush(s, d, &mu)
	if f != (Flushed{UDPFailed: 1, TunFailed: 2}) {
		t.Errorf("Flush = %+v", f)
	}
	if string(d.written) != string([]byte{10, 12}) {
		t.Errorf("device got %v, want [10 12]", d.written)
	}
	if len(o.UDP) != 0 || len(o.Local) != 0 || cap(o.Local) < 4 {
		t.Errorf("after Flush: %d UDP, %d local (cap %d)", len(o.UDP), len(o.Local), cap(o.Local))
	}

	o.UDP = append(o.UDP, udpio.Message{Buf: []byte{1}, N: 1})
	if f := o.Flush(&fakeSender{err: net.ErrClosed}, d, &mu); !f.Closed {
		t.Errorf("closed socket: %+v", f)
	}
	o.Local = append(o.Local, []byte{10})
	if f := o.Flush(s, &fakeDev{closed: true}, &mu); !f.Closed {
		t.Errorf("closed device: %+v", f)
	}
}
