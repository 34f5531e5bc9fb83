// SPDX-License-Identifier: MIT

package tunnel

import (
	"errors"
	"net"
	"sync"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// UDPHeadroom is room past the tunnel MTU in a Teredo datagram's buffer for
// its headers (an authentication header and an origin indication) and
// RFC 6081 trailers: a socket buffer of MTU+UDPHeadroom bytes carries any
// datagram a peer may send for that MTU.
const UDPHeadroom = 256

// BatchSender is the Teredo socket as Flush needs it (*udpio.Conn).
type BatchSender interface {
	WriteBatch(msgs []udpio.Message) (int, error)
}

// PacketWriter is the tunnel device as Flush needs it (tundev.Device).
type PacketWriter interface {
	Write(bufs [][]byte, offset int) (int, error)
}

// Flushed says what became of one Out.
type Flushed struct {
	UDPFailed int  // datagrams the socket did not send
	TunFailed int  // packets the tunnel refused (no route back, say)
	Closed    bool // the socket or the device is closed: the loop should end
}

// Flush sends o.UDP on conn and writes o.Local to dev, then resets o: the
// last step of every batch in the client and the relay. devMu serialises
// device writes, since the socket loop, the tunnel loop and the timer all
// produce packets for the host and a device takes one writer at a time. A
// packet the device refuses is skipped and counted; the rest still go.
func (o *Out) Flush(conn BatchSender, dev PacketWriter, devMu *sync.Mutex) (f Flushed) {
	defer o.Reset()
	if len(o.UDP) > 0 {
		sent, err := conn.WriteBatch(o.UDP)
		if errors.Is(err, net.ErrClosed) {
			return Flushed{Closed: true}
		}
		if err != nil {
			f.UDPFailed = len(o.UDP) - sent
		}
	}
	if len(o.Local) == 0 {
		return f
	}
	devMu.Lock()
	defer devMu.Unlock()
	// Skip refused packets on a copy of the slice: o.Local keeps its whole
	// backing array for Reset to clear and the next batch to use.
	pkts := o.Local
	for len(pkts) > 0 {
		n, err := dev.Write(pkts, 0)
		if err == nil {
			break
		}
		if errors.Is(err, net.ErrClosed) {
			f.Closed = true
			return f
		}
		f.TunFailed++
		pkts = pkts[n+1:]
	}
	return f
}
