// SPDX-License-Identifier: MIT

package client

// The privileged helper: a small process that keeps CAP_NET_ADMIN and
// nothing else, configures the tunnel interface for the packet process and
// runs the operator's hook, so that the process that parses packets from
// the Internet holds no privilege at all (Miredo splits its client the same
// way, with a privileged child that applies addresses and runs the hook).
// It is our own binary, re-executed with a hidden flag; the two talk over a
// SOCK_SEQPACKET socket pair, one fixed-size message per request and per
// reply.
//
// Request (23 bytes): request id (4, big endian), state (1 up, 2 down),
// IPv6 address (16), MTU (2, big endian). Up needs an address in the
// Teredo prefix and an MTU in 1280-65535; down needs the zero address.
// Anything else is refused and the helper exits: only a compromised packet
// process sends it.
//
// Reply: the request's id (4), result (0 done, 1 failed), hook exit status
// (4, big endian, -1 when no hook ran), then a UTF-8 error message. The id
// keeps the two in step: a reply that comes after its request timed out is
// recognised as late and skipped, not taken as the next request's answer.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/dropprivs"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/proto"
)

// HelperFlag is the hidden command-line flag that makes the binary run as
// the privileged helper.
const HelperFlag = "privileged-helper"

// helperFD is the descriptor the helper finds its socket on (the first of
// exec.Cmd.ExtraFiles).
const helperFD = 3

// Interface settings the client applies, as Miredo's client hook does.
const (
	// DefaultRouteMetric keeps native IPv6 preferred: its default routes
	// have lower metrics (1024 and below).
	DefaultRouteMetric = 1029
	// hookTimeout bounds one hook run; Miredo waits forever.
	hookTimeout = 30 * time.Second
)

const (
	stateUp   = 1
	stateDown = 2

	requestLen    = 23
	replyHeadLen  = 9
	maxReplyLen   = 1024
	hookNotRun    = -1
	replyDone     = 0
	replyFailed   = 1
	helperTimeout = hookTimeout + 10*time.Second
)

// ErrBadRequest is a request the helper refuses.
var ErrBadRequest = errors.New("privileged helper: invalid request")

// request is one message to the helper.
type request struct {
	up   bool
	addr netip.Addr
	mtu  int
}

func (r request) marshal(id uint32) []byte {
	b := make([]byte, requestLen)
	binary.BigEndian.PutUint32(b, id)
	b[4] = stateDown
	if r.up {
		b[4] = stateUp
		a := r.addr.As16()
		copy(b[5:21], a[:])
		binary.BigEndian.PutUint16(b[21:], uint16(r.mtu))
	}
	return b
}

// parseRequest reads and validates a request: the helper's whole attack
// surface.
func parseRequest(b []byte) (id uint32, req request, err error) {
	if len(b) != requestLen {
		return 0, request{}, fmt.Errorf("%w: %d bytes", ErrBadRequest, len(b))
	}
	id = binary.BigEndian.Uint32(b)
	addr := netip.AddrFrom16([16]byte(b[5:21]))
	mtu := int(binary.BigEndian.Uint16(b[21:]))
	switch b[4] {
	case stateUp:
		if !proto.HasPrefix(addr, proto.DefaultPrefix) || addr.Is4In6() {
			return id, request{}, fmt.Errorf("%w: address %v is not a Teredo address", ErrBadRequest, addr)
		}
		if mtu < netcfg.MinMTU || mtu > netcfg.MaxMTU {
			return id, request{}, fmt.Errorf("%w: MTU %d outside 1280-65535", ErrBadRequest, mtu)
		}
		return id, request{up: true, addr: addr, mtu: mtu}, nil
	case stateDown:
		if addr != netip.IPv6Unspecified() || mtu != 0 {
			return id, request{}, fmt.Errorf("%w: down with address %v MTU %d", ErrBadRequest, addr, mtu)
		}
		return id, request{}, nil
	}
	return id, request{}, fmt.Errorf("%w: state %d", ErrBadRequest, b[4])
}

func marshalReply(id uint32, err error, hookStatus int) []byte {
	b := make([]byte, replyHeadLen, maxReplyLen)
	binary.BigEndian.PutUint32(b, id)
	binary.BigEndian.PutUint32(b[5:], uint32(int32(hookStatus)))
	if err != nil {
		b[4] = replyFailed
		msg := err.Error()
		if len(msg) > maxReplyLen-replyHeadLen {
			msg = msg[:maxReplyLen-replyHeadLen]
		}
		b = append(b, msg...)
	}
	return b
}

func parseReply(b []byte) (id uint32, hookStatus int, err error) {
	if len(b) < replyHeadLen {
		return 0, hookNotRun, fmt.Errorf("privileged helper: short reply (%d bytes)", len(b))
	}
	id = binary.BigEndian.Uint32(b)
	hookStatus = int(int32(binary.BigEndian.Uint32(b[5:])))
	if b[4] != replyDone {
		return id, hookStatus, fmt.Errorf("privileged helper: %s", b[replyHeadLen:])
	}
	return id, hookStatus, nil
}

// HelperConfig is what the helper is started with.
type HelperConfig struct {
	Interface string
	Hook      string // "" for none
	User      string // the account to run as, keeping CAP_NET_ADMIN
}

// helperArgs is the command line the packet process starts the helper
// with; RunHelper's caller parses it back.
func helperArgs(cfg HelperConfig, logLevel string) []string {
	args := []string{"--" + HelperFlag, "--interface", cfg.Interface, "--user", cfg.User, "--log-level", logLevel}
	if cfg.Hook != "" {
		args = append(args, "--hook", cfg.Hook)
	}
	return args
}

// RunHelper is the privileged helper's main: it drops to cfg.User with
// CAP_NET_ADMIN only, then applies each request from the packet process
// (fd 3) until the socket closes, when it runs the hook with down and
// destroy and returns.
func RunHelper(cfg HelperConfig, log *slog.Logger) error {
	// The packet process decides when we stop: its socket closing is the
	// signal. A terminal's ^C or the service manager's TERM reach the
	// whole process group, and the final hook runs must still happen.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	sock, err := openHelperSocket(helperFD)
	if err != nil {
		return err
	}
	defer sock.Close()
	res, err := dropprivs.Drop(dropprivs.Config{User: cfg.User, Keep: dropprivs.NewCapSet(dropprivs.CapNetAdmin)})
	if err != nil {
		return fmt.Errorf("privileged helper: %w", err)
	}
	log.Debug("privileged helper ready", "privileges", res)
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("privileged helper: netlink: %w", err)
	}
	defer h.Close()
	link, err := netcfg.NewLink(h, cfg.Interface)
	if err != nil {
		return err
	}
	hp := &helperProc{link: link, cfg: cfg, log: log}
	if res.Caps.Has(dropprivs.CapNetAdmin) {
		hp.ambient = []uintptr{uintptr(dropprivs.CapNetAdmin)}
	}
	if idx, err := link.Index(); err == nil {
		hp.ifindex = idx
	}
	return hp.serve(sock)
}

// openHelperSocket takes over the socket the packet process passed on fd.
// It marks it close-on-exec first: exec.Cmd.ExtraFiles arrive without the
// flag, and every hook (which runs with CAP_NET_ADMIN), and anything a hook
// leaves running, would otherwise hold the helper's end of the socket pair.
// Then it checks that fd is the SOCK_SEQPACKET socket startHelper made, so
// that a helper started by hand stops here, before it touches the
// interface or runs a hook.
func openHelperSocket(fd int) (*os.File, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("privileged helper: nothing on fd %d (%w); this mode is started by miredo-client itself", fd, err)
	}
	if err := checkHelperSocket(fd); err != nil {
		return nil, fmt.Errorf("privileged helper: fd %d: %w; this mode is started by miredo-client itself", fd, err)
	}
	return os.NewFile(uintptr(fd), "privileged-helper"), nil
}

// checkHelperSocket reports whether fd is an AF_UNIX SOCK_SEQPACKET socket.
func checkHelperSocket(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("socket type: %w", err)
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET {
		return fmt.Errorf("socket of domain %d type %d, want AF_UNIX SOCK_SEQPACKET", domain, typ)
	}
	return nil
}

// linkConfig is what the helper does to the interface: *netcfg.Link, or a
// recorder in tests.
type linkConfig interface {
	CleanStart() (netcfg.Cleaned, error)
	SetMTU(mtu int) error
	SetUp() error
	SetDown() error
	AddAddr(p netip.Prefix) error
	DelAddr(p netip.Prefix) error
	AddRoute(r netcfg.Route) error
	DelRoute(r netcfg.Route) error
}

// helperProc is the helper's state: what the interface carries now.
type helperProc struct {
	link    linkConfig
	cfg     HelperConfig
	log     *slog.Logger
	ifindex int
	ambient []uintptr // capabilities the hook inherits
	clean   bool      // the stale configuration was removed
	cur     request
}

func (hp *helperProc) serve(sock io.ReadWriter) error {
	buf := make([]byte, 64)
	for {
		n, err := sock.Read(buf)
		if err != nil || n == 0 {
			// The packet process is gone (or closed its end at exit).
			hp.finish()
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("privileged helper: read: %w", err)
		}
		id, req, err := parseRequest(buf[:n])
		if err != nil {
			hp.log.Error("refusing request", "err", err)
			hp.finish()
			return err
		}
		cfgErr := hp.apply(req)
		if cfgErr != nil {
			hp.log.Error("interface configuration failed", "err", cfgErr)
		}
		status := hp.hook(req, hp.cur)
		hp.cur = req
		if _, err := sock.Write(marshalReply(id, cfgErr, status)); err != nil {
			hp.finish()
			return nil
		}
	}
}

// finish runs the hook a last time, as Miredo does when the tunnel goes.
func (hp *helperProc) finish() {
	if hp.cur.up {
		if err := hp.apply(request{}); err != nil {
			hp.log.Debug("final interface down", "err", err)
		}
	}
	if hp.cfg.Hook == "" {
		return
	}
	hp.hook(request{}, hp.cur)
	hp.cur = request{}
	hp.runHook(hookEnv(hp.cfg.Interface, hp.ifindex, "destroy", request{}, request{}))
}

// llAddress is the link-local address of the tunnel: the source of our
// router solicitations, which the hook knows as LLADDRESS.
func llAddress(addr netip.Addr) netip.Addr {
	if a, ok := proto.ParseAddress(addr); ok && a.Cone() {
		return proto.LinkLocalClientCone()
	}
	return proto.LinkLocalClient()
}

// apply configures the interface for req with netlink, as Miredo's Linux
// client hook would: MTU, up, link-local /64, the Teredo address /32 (so
// 2001::/32 is on-link through the tunnel), the default route with metric
// 1029, and the previous address removed. Down removes the address and
// route and takes the link down.
func (hp *helperProc) apply(req request) error {
	l := hp.link
	if !hp.clean {
		if _, err := l.CleanStart(); err != nil {
			return err
		}
		hp.clean = true
	}
	defRoute := netcfg.Route{Prefix: netip.MustParsePrefix("::/0"), Metric: DefaultRouteMetric}
	if !req.up {
		var errs []error
		if hp.cur.up {
			errs = append(errs, ignoreMissing(l.DelRoute(defRoute)), ignoreMissing(l.DelAddr(netip.PrefixFrom(hp.cur.addr, 32))))
		}
		errs = append(errs, l.SetDown())
		return errors.Join(errs...)
	}
	if err := l.SetMTU(req.mtu); err != nil {
		return err
	}
	if err := l.SetUp(); err != nil {
		return err
	}
	if err := ignoreExist(l.AddAddr(netip.PrefixFrom(llAddress(req.addr), 64))); err != nil {
		return err
	}
	if err := ignoreExist(l.AddAddr(netip.PrefixFrom(req.addr, 32))); err != nil {
		return err
	}
	if hp.cur.up && hp.cur.addr != req.addr {
		if err := ignoreMissing(l.DelAddr(netip.PrefixFrom(hp.cur.addr, 32))); err != nil {
			return err
		}
	}
	return ignoreExist(l.AddRoute(defRoute))
}

func ignoreExist(err error) error {
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

// hook runs the operator's script for req (old is the previous request)
// and returns its exit status, or hookNotRun.
func (hp *helperProc) hook(req, old request) int {
	if hp.cfg.Hook == "" {
		return hookNotRun
	}
	state := "down"
	if req.up {
		state = "up"
	}
	return hp.runHook(hookEnv(hp.cfg.Interface, hp.ifindex, state, req, old))
}

// hookEnv is Miredo's client-hook environment (teredo.md §1.8): ADDRESS,
// LLADDRESS and MTU only when up, the OLD_ ones only when the previous
// call was up. Miredo clears its environment; we give a standard PATH.
func hookEnv(iface string, ifindex int, state string, req, old request) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"IFACE=" + iface,
		"IFINDEX=" + strconv.Itoa(ifindex),
		"STATE=" + state,
	}
	if req.up {
		env = append(env, "ADDRESS="+req.addr.String(), "LLADDRESS="+llAddress(req.addr).String(), "MTU="+strconv.Itoa(req.mtu))
	}
	if !old.up {
		return append(env, "OLD_STATE=down")
	}
	return append(env, "OLD_STATE=up", "OLD_ADDRESS="+old.addr.String(),
		"OLD_LLADDRESS="+llAddress(old.addr).String(), "OLD_MTU="+strconv.Itoa(old.mtu))
}

// runHook executes the hook with env, its output on our stderr, and CAP_NET_ADMIN
// passed on as an ambient capability so that it can run ip(8) although it
// does not run as root.
func (hp *helperProc) runHook(env []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hp.cfg.Hook)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{AmbientCaps: hp.ambient}
	err := cmd.Run()
	status := cmd.ProcessState.ExitCode() // -1 (hookNotRun) when it did not start
	lvl := slog.LevelDebug
	if err != nil {
		lvl = slog.LevelWarn
	}
	hp.log.Log(context.Background(), lvl, "hook run", "hook", hp.cfg.Hook, "state", envValue(env, "STATE"), "status", status, "err", err)
	return status
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if len(kv) > len(key) && kv[:len(key)] == key && kv[len(key)] == '=' {
			return kv[len(key)+1:]
		}
	}
	return ""
}

// helper is the packet process's handle on the privileged helper.
type helper struct {
	cmd     *exec.Cmd
	sock    *os.File
	mu      sync.Mutex // one request at a time
	lastID  uint32     // of the last request sent; mu held
	timeout time.Duration
	done    chan struct{}
	closed  sync.Once
	err     error // from Close
}

// startHelper re-executes our binary (self) as the privileged helper,
// connected by a socket pair. It must run before privileges are dropped.
func startHelper(self string, cfg HelperConfig, logLevel string) (*helper, error) {
	// Nothing of ours may leak into the helper or its hooks: the tunnel
	// device in particular (songgao/water opens it without O_CLOEXEC),
	// which would keep the interface alive after the packet process is
	// gone. ExtraFiles are dup'ed in the child and so still arrive.
	if err := closeOnExec(); err != nil {
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("privileged helper: socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "privileged-helper")
	theirs := os.NewFile(uintptr(fds[1]), "privileged-helper")
	defer theirs.Close()
	cmd := exec.Command(self, helperArgs(cfg, logLevel)...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = []string{}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("privileged helper: start %s: %w", self, err)
	}
	h := &helper{cmd: cmd, sock: ours, timeout: helperTimeout, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(h.done)
	}()
	return h, nil
}

// closeOnExec marks every descriptor above stderr close-on-exec.
func closeOnExec() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("close_range: %w", err)
	}
	// Before Linux 5.11: walk /proc/self/fd.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// Up asks for the interface to carry addr with mtu; it returns when the
// helper (and the hook) are done.
func (h *helper) Up(addr netip.Addr, mtu int) (int, error) {
	return h.do(request{up: true, addr: addr, mtu: mtu})
}

// Down asks for the interface to go down.
func (h *helper) Down() (int, error) { return h.do(request{}) }

func (h *helper) do(req request) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastID++
	id := h.lastID
	h.sock.SetDeadline(time.Now().Add(h.timeout))
	if _, err := h.sock.Write(req.marshal(id)); err != nil {
		return hookNotRun, fmt.Errorf("privileged helper: %w", err)
	}
	buf := make([]byte, maxReplyLen)
	for {
		n, err := h.sock.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = errors.New("the process has exited")
			}
			return hookNotRun, fmt.Errorf("privileged helper: %w", err)
		}
		got, status, err := parseReply(buf[:n])
		if n >= replyHeadLen && got != id {
			if got < id {
				continue // the late answer to a request that timed out
			}
			return hookNotRun, fmt.Errorf("privileged helper: reply to request %d, want %d", got, id)
		}
		return status, err
	}
}

// Done is closed when the helper has exited.
func (h *helper) Done() <-chan struct{} { return h.done }

// Close closes the socket, which makes the helper run its last hooks and
// exit, and waits for that up to timeout.
// Calls after the first return the first one's result.
func (h *helper) Close(timeout time.Duration) error {
	h.closed.Do(func() {
		h.sock.Close()
		select {
		case <-h.done:
		case <-time.After(timeout):
			h.cmd.Process.Kill()
			<-h.done
			h.err = errors.New("privileged helper: did not exit in time; killed")
		}
	})
	return h.err
}
