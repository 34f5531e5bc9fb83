// SPDX-License-Identifier: MIT

package netcfg

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"teredo", true},
		{"tun%d", true},
		{"a", true},
		{"fifteen-bytes-x", true},
		{"sixteen-bytes-xx", false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
		{"a\tb", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, not ErrInvalidName", tt.name, err)
		}
	}
}

func TestValidateMTU(t *testing.T) {
	tests := []struct {
		mtu int
		ok  bool
	}{
		{1280, true}, {1500, true}, {65535, true},
		{1279, false}, {0, false}, {-1, false}, {65536, false},
	}
	for _, tt := range tests {
		err := validateMTU(tt.mtu)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidMTU)) {
			t.Errorf("validateMTU(%d) = %v, want ok=%v", tt.mtu, err, tt.ok)
		}
	}
}

// SetMTU must refuse a bad MTU before touching netlink: the Link here has no
// handle, so any netlink call would panic.
func TestSetMTURefusedBeforeSyscall(t *testing.T) {
	l := &Link{name: "teredo"}
	if err := l.SetMTU(1000); !errors.Is(err, ErrInvalidMTU) {
		t.Fatalf("SetMTU(1000) = %v, want ErrInvalidMTU", err)
	}
}

func TestNewLinkValidates(t *testing.T) {
	if _, err := NewLink(&netlink.Handle{}, "bad/name"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("NewLink(bad/name) = %v, want ErrInvalidName", err)
	}
	if _, err := NewLink(nil, "teredo"); err == nil {
		t.Error("NewLink(nil handle) succeeded")
	}
}

func TestClassifyCreateError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		want  error  // sentinel, nil for "unclassified"
		hints string // substring the message must carry
	}{
		{"missing device node", syscall.ENOENT, ErrNoTUN, "modprobe tun"},
		{"no driver", syscall.ENODEV, ErrNoTUN, "/dev/net/tun"},
		{"no capability", os.NewSyscallError("ioctl", syscall.EPERM), ErrPermission, "CAP_NET_ADMIN"},
		{"device cgroup", syscall.EACCES, ErrPermission, "run as root"},
		{"held by another process", os.NewSyscallError("ioctl", syscall.EBUSY), ErrNameTaken, "another process"},
		{"not a tun", os.NewSyscallError("ioctl", syscall.EINVAL), ErrNameTaken, "ip -d link show teredo"},
		{"other", syscall.ENOMEM, nil, "create TUN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClassifyCreateError("teredo", tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("%v does not wrap %v", got, tt.err)
			}
			for _, s := range []error{ErrNoTUN, ErrPermission, ErrNameTaken} {
				if errors.Is(got, s) != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, s, !(s == tt.want))
				}
			}
			if !strings.Contains(got.Error(), tt.hints) {
				t.Errorf("%q lacks %q", got, tt.hints)
			}
		})
	}
}

func TestClassifyNetlinkError(t *testing.T) {
	got := classifyNetlinkError("ip link set dev teredo up", syscall.EPERM)
	if !errors.Is(got, ErrPermission) || !errors.Is(got, syscall.EPERM) || !strings.Contains(got.Error(), "CAP_NET_ADMIN") {
		t.Errorf("EPERM: %v", got)
	}
	got = classifyNetlinkError("ip -6 addr add 2001:db8::1/64 dev teredo nodad", syscall.EEXIST)
	if errors.Is(got, ErrPermission) || !errors.Is(got, os.ErrExist) || !strings.Contains(got.Error(), "ip -6 addr add") {
		t.Errorf("EEXIST: %v", got)
	}
}

func TestToIPNet(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for refused
	}{
		{"2001::/32", "2001::/32"},
		{"::/0", "::/0"},
		{"2001:0:c000:201::1/128", "2001:0:c000:201::1/128"},
		{"fe80::ffff:ffff:ffff/64", "fe80::ffff:ffff:ffff/64"},
		{"192.0.2.0/24", ""},
		{"::ffff:192.0.2.1/128", ""},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.in)
		n, err := toIPNet(p)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidPrefix) {
				t.Errorf("toIPNet(%s) = %v, %v; want ErrInvalidPrefix", tt.in, n, err)
			}
			continue
		}
		if err != nil || n.String() != tt.want {
			t.Errorf("toIPNet(%s) = %v, %v; want %s", tt.in, n, err, tt.want)
			continue
		}
		back, ok := fromIPNet(n)
		if !ok || back != p {
			t.Errorf("fromIPNet(toIPNet(%s)) = %v, %v", tt.in, back, ok)
		}
	}
	if _, err := toIPNet(netip.Prefix{}); !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("toIPNet(zero) = %v", err)
	}
}

func TestToRoute(t *testing.T) {
	_, dst, _ := net.ParseCIDR("2001::/32")
	tests := []struct {
		in   netlink.Route
		want Route
	}{
		{netlink.Route{Dst: dst, Priority: 1024}, Route{netip.MustParsePrefix("2001::/32"), 1024}},
		{netlink.Route{Priority: 1029}, Route{netip.MustParsePrefix("::/0"), 1029}},
	}
	for _, tt := range tests {
		if got := toRoute(tt.in); got != tt.want {
			t.Errorf("toRoute(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if s := (Route{netip.MustParsePrefix("::/0"), 1029}).String(); s != "::/0 metric 1029" {
		t.Errorf("String = %q", s)
	}
}

func TestRetryDump(t *testing.T) {
	calls := 0
	got, err := retryDump(func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{0}, netlink.ErrDumpInterrupted
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Errorf("retry then success: %v, %v after %d calls", got, err, calls)
	}

	calls = 0
	_, err = retryDump(func() ([]int, error) {
		calls++
		return nil, netlink.ErrDumpInterrupted
	})
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != maxDumpTries {
		t.Errorf("always interrupted: %v after %d calls", err, calls)
	}

	calls = 0
	_, err = retryDump(func() ([]int, error) {
		calls++
		return nil, syscall.EPERM
	})
	if !errors.Is(err, syscall.EPERM) || calls != 1 {
		t.Errorf("other error: %v after %d calls", err, calls)
	}
}
