// SPDX-License-Identifier: MIT

package udpio_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// A read loop in the shape the server uses: one goroutine per socket,
// buffers allocated once, replies written back in place as one batch.
func Example() {
	server, err := udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{})
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := make([]udpio.Message, udpio.MaxBatch)
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		for {
			n, err := server.ReadBatch(msgs)
			if errors.Is(err, net.ErrClosed) {
				return // shut down
			}
			if err != nil {
				continue // one failed call; the socket still works
			}
			// Answer each datagram to its sender: Addr and N are already
			// the reply's destination and length.
			server.WriteBatch(msgs[:n])
		}
	}()

	client, err := udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	out := []udpio.Message{{Buf: []byte("ping"), N: 4, Addr: server.LocalAddr()}}
	client.WriteBatch(out)
	in := []udpio.Message{{Buf: make([]byte, 2048)}}
	n, _ := client.ReadBatch(in)
	fmt.Println(n, string(in[0].Buf[:in[0].N]), in[0].Addr == server.LocalAddr())

	server.Close()
	<-done
	// Output: 1 ping true
}
