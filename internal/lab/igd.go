// SPDX-License-Identifier: MIT

package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The lab's UPnP Internet Gateway Device. Debian's miniupnpd 2.3.1 refuses
// to map ports when the WAN address is in a reserved range, and the
// documentation ranges the lab must use are reserved to it (the option that
// lifts this, ext_allow_private_ipv4, came with 2.3.9), so a SymmetricUPnP
// NAT box runs this small gateway instead: SSDP discovery (UPnP Device
// Architecture 1.1 §1.3) and the WANIPConnection actions a Teredo client
// needs (UPnP WANIPConnection:1 §2.4, :2), each mapping installed as real
// nftables state in the NAT box (see natRuleset). Its e2e tests hold it to
// Debian's upnpc (miniupnpc), the reference client, and to goupnp.

// PortMapping is one UDP port mapping of the gateway.
type PortMapping struct {
	External    uint16         // port on the NAT's WAN address
	Internal    netip.AddrPort // LAN endpoint it leads to
	Description string
	// Lease is how long the mapping was granted for; 0 means until deleted.
	Lease   time.Duration
	expires time.Time
	timer   *time.Timer
}

// ssdpGroup is where SSDP searches are multicast (UDA 1.1 §1.1).
var ssdpGroup = netip.MustParseAddrPort("239.255.255.250:1900")

// UPnP service and device types the gateway implements. It offers
// WANIPConnection in versions 2 and 1 side by side, so that clients asking
// for either (goupnp matches the type exactly) find it; both are the same
// mapping table.
const (
	urnIGD2     = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
	urnWANDev2  = "urn:schemas-upnp-org:device:WANDevice:2"
	urnWANConn2 = "urn:schemas-upnp-org:device:WANConnectionDevice:2"
	urnIPConn2  = "urn:schemas-upnp-org:service:WANIPConnection:2"
	urnIPConn1  = "urn:schemas-upnp-org:service:WANIPConnection:1"
	urnCIF1     = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
	controlPath = "/ctl/IPConn"
	cifPath     = "/ctl/CmnIfCfg"
	descPath    = "/rootDesc.xml"
	// maxLeaseV2 is what WANIPConnection:2 grants for a lease of 0
	// (WANIPConnection:2 §2.3.17: at most a week).
	maxLeaseV2 = 604800 * time.Second
)

// UPnP errors the gateway answers with (WANIPConnection:2 §2.5).
const (
	upnpInvalidAction  = 401
	upnpInvalidArgs    = 402
	upnpActionFailed   = 501
	upnpArrayIndex     = 713
	upnpNoSuchEntry    = 714
	upnpWildcardExt    = 716
	upnpConflict       = 718
	upnpRemoteWildcard = 726
)

// Gateway is a running UPnP IGD on a NAT box's LAN address. Its methods are
// safe for concurrent use.
type Gateway struct {
	lab   *Lab
	nat   string
	lanIP netip.Addr
	lan   netip.Prefix
	uuid  string
	start time.Time

	ssdp  *net.UDPConn // joined to the SSDP group on the LAN
	reply *net.UDPConn // answers searches from the LAN address
	ln    net.Listener
	srv   *http.Server
	wg    sync.WaitGroup

	mu       sync.Mutex
	mappings map[uint16]*PortMapping
	closed   bool
}

// startGateway opens the gateway's sockets in the NAT box's namespace and
// serves SSDP and HTTP there.
func startGateway(l *Lab, nat string, spec natSpec) (*Gateway, error) {
	g := &Gateway{lab: l, nat: nat, lanIP: spec.lan.Addr(), lan: spec.lan.Masked(), start: time.Now(),
		mappings: map[uint16]*PortMapping{}}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s", l.Prefix, nat)
	sum := h.Sum64()
	g.uuid = fmt.Sprintf("4c616267-6174-6577-%04x-%012x", sum>>48, sum&0xffffffffffff)
	err := l.Host(nat).Do(func() error {
		ifi, err := net.InterfaceByName(lanIfname)
		if err != nil {
			return err
		}
		if g.ssdp, err = net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(ssdpGroup)); err != nil {
			return err
		}
		if g.reply, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.lanIP, 0))); err != nil {
			return err
		}
		g.ln, err = net.Listen("tcp4", netip.AddrPortFrom(g.lanIP, 0).String())
		return err
	})
	if err != nil {
		g.closeSockets()
		return nil, fmt.Errorf("%s: UPnP gateway: %w", nat, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+descPath, g.serveDescription)
	mux.HandleFunc("POST "+controlPath, g.serveControl)
	mux.HandleFunc("POST "+cifPath, g.serveControl)
	g.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.wg.Go(func() { _ = g.srv.Serve(g.ln) })
	g.wg.Go(g.serveSSDP)
	l.log.Info("lab: UPnP gateway up", "nat", nat, "location", g.Location())
	return g, nil
}

// Location is the URL of the gateway's device description, as SSDP gives it.
func (g *Gateway) Location() string {
	return "http://" + g.ln.Addr().String() + descPath
}

// Mappings lists the current port mappings by external port.
func (g *Gateway) Mappings() []PortMapping {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mappingsLocked()
}

func (g *Gateway) mappingsLocked() []PortMapping {
	out := make([]PortMapping, 0, len(g.mappings))
	for _, m := range g.mappings {
		c := *m
		c.timer = nil
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b PortMapping) int { return int(a.External) - int(b.External) })
	return out
}

// reinstall replaces the NAT box's ruleset through install with one carrying
// the current mappings, so a change of WAN address (Rebind) keeps them.
func (g *Gateway) reinstall(install func([]PortMapping) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return install(g.mappingsLocked())
}

// Close stops serving and forgets the mappings (the NAT box's rules are the
// lab's to replace). Safe to call twice.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	for _, m := range g.mappings {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	g.mappings = nil
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
	g.closeSockets()
	g.wg.Wait()
	return nil
}

func (g *Gateway) closeSockets() {
	if g.ssdp != nil {
		_ = g.ssdp.Close()
	}
	if g.reply != nil {
		_ = g.reply.Close()
	}
	if g.ln != nil {
		_ = g.ln.Close()
	}
}

// serveSSDP answers M-SEARCH requests (UDA 1.1 §1.3.2) for the gateway's
// device and service types with unicast responses naming the description.
func (g *Gateway) serveSSDP() {
	buf := make([]byte, 2048)
	for {
		n, from, err := g.ssdp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:n])))
		if err != nil || req.Method != "M-SEARCH" || req.Header.Get("Man") != `"ssdp:discover"` {
			continue
		}
		for _, st := range g.searchTargets(req.Header.Get("St")) {
			usn := "uuid:" + g.udn(st.device)
			if st.target != usn {
				usn += "::" + st.target
			}
			msg := "HTTP/1.1 200 OK\r\n" +
				"CACHE-CONTROL: max-age=120\r\n" +
				"EXT:\r\n" +
				"LOCATION: " + g.Location() + "\r\n" +
				"SERVER: Linux/6 UPnP/1.1 miredo-go-lab/1\r\n" +
				"ST: " + st.target + "\r\n" +
				"USN: " + usn + "\r\n" +
				"\r\n"
			_, _ = g.reply.WriteToUDPAddrPort([]byte(msg), from)
		}
	}
}

// searchTarget is one answer to a search: the target as answered and which
// of the three devices it belongs to (0 root, 1 WAN device, 2 connection
// device).
type searchTarget struct {
	target string
	device int
}

// searchTargets returns the answers to a search for st: all of them for
// ssdp:all, the one matching otherwise. A search for an older version of a
// type the gateway has is answered with the version asked for (UDA 1.1
// §1.3.2).
func (g *Gateway) searchTargets(st string) []searchTarget {
	all := []searchTarget{
		{"upnp:rootdevice", 0}, {"uuid:" + g.udn(0), 0}, {"uuid:" + g.udn(1), 1}, {"uuid:" + g.udn(2), 2},
		{urnIGD2, 0}, {urnWANDev2, 1}, {urnWANConn2, 2}, {urnIPConn2, 2}, {urnIPConn1, 2}, {urnCIF1, 1},
	}
	if st == "ssdp:all" {
		return all
	}
	for _, a := range all {
		if a.target == st {
			return []searchTarget{a}
		}
		if base, v, ok := strings.Cut(a.target, ":2"); ok && v == "" && st == base+":1" && strings.HasPrefix(st, "urn:") {
			return []searchTarget{{st, a.device}}
		}
	}
	return nil
}

// udn is the unique device name (without "uuid:") of device i.
func (g *Gateway) udn(i int) string {
	return fmt.Sprintf("%s%d", g.uuid[:len(g.uuid)-1], i)
}

func (g *Gateway) serveDescription(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	fmt.Fprintf(w, `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1">
<specVersion><major>1</major><minor>1</minor></specVersion>
<device>
<deviceType>%s</deviceType>
<friendlyName>miredo-go lab gateway (%s)</friendlyName>
<manufacturer>miredo-go</manufacturer>
<modelName>lab IGD</modelName>
<UDN>uuid:%s</UDN>
<deviceList><device>
<deviceType>%s</deviceType>
<friendlyName>WAN device</friendlyName>
<manufacturer>miredo-go</manufacturer>
<modelName>lab IGD</modelName>
<UDN>uuid:%s</UDN>
<serviceList><service>
<serviceType>%s</serviceType>
<serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId>
<SCPDURL>/WANCfg.xml</SCPDURL><controlURL>%s</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL>
</service></serviceList>
<deviceList><device>
<deviceType>%s</deviceType>
<friendlyName>WAN connection device</friendlyName>
<manufacturer>miredo-go</manufacturer>
<modelName>lab IGD</modelName>
<UDN>uuid:%s</UDN>
<serviceList><service>
<serviceType>%s</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>%s</controlURL><eventSubURL>/evt/IPConn</eventSubURL>
</service><service>
<serviceType>%s</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1v1</serviceId>
<SCPDURL>/WANIPCn1.xml</SCPDURL><controlURL>%s</controlURL><eventSubURL>/evt/IPConn1</eventSubURL>
</service></serviceList>
</device></deviceList>
</device></deviceList>
</device>
</root>
`, urnIGD2, g.nat, g.udn(0), urnWANDev2, g.udn(1), urnCIF1, cifPath, urnWANConn2, g.udn(2), urnIPConn2, controlPath, urnIPConn1, controlPath)
}

// upnpError is a failed action: a UPnP error code and its description.
type upnpError struct {
	code int
	desc string
}

func (e *upnpError) Error() string { return fmt.Sprintf("UPnP error %d %s", e.code, e.desc) }

// serveControl runs one SOAP action (UDA 1.1 §3.2).
func (g *Gateway) serveControl(w http.ResponseWriter, r *http.Request) {
	service, action, ok := strings.Cut(strings.Trim(r.Header.Get("SOAPAction"), `"`), "#")
	if !ok {
		http.Error(w, "no SOAPAction", http.StatusBadRequest)
		return
	}
	args, err := readSOAPArgs(io.LimitReader(r.Body, 64<<10), action)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := g.act(service, action, args)
	var ue *upnpError
	if errors.As(err, &ue) {
		g.lab.log.Info("lab: UPnP action refused", "nat", g.nat, "action", action, "code", ue.code, "reason", ue.desc)
		writeSOAPFault(w, ue)
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?>`+"\n"+
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`+
		`<u:%sResponse xmlns:u="%s">`, action, service)
	for _, kv := range out {
		fmt.Fprintf(&b, "<%s>", kv[0])
		_ = xml.EscapeText(&b, []byte(kv[1]))
		fmt.Fprintf(&b, "</%s>", kv[0])
	}
	fmt.Fprintf(&b, `</u:%sResponse></s:Body></s:Envelope>`+"\n", action)
	_, _ = io.WriteString(w, b.String())
}

// readSOAPArgs returns the arguments of the action element in a SOAP
// envelope, by local name.
func readSOAPArgs(r io.Reader, action string) (map[string]string, error) {
	d := xml.NewDecoder(r)
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("SOAP body without %s: %w", action, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == action {
			break
		}
	}
	args := map[string]string{}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("SOAP body: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var v string
			if err := d.DecodeElement(&v, &t); err != nil {
				return nil, fmt.Errorf("SOAP argument %s: %w", t.Name.Local, err)
			}
			args[t.Name.Local] = strings.TrimSpace(v)
		case xml.EndElement:
			return args, nil
		}
	}
}

func writeSOAPFault(w http.ResponseWriter, e *upnpError) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0"?>`+"\n"+
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`+
		`<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>`+
		`<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError>`+
		`</detail></s:Fault></s:Body></s:Envelope>`+"\n", e.code, e.desc)
}

// act runs an action and returns its output arguments in order.
func (g *Gateway) act(service, action string, in map[string]string) ([][2]string, error) {
	if service == urnCIF1 {
		if action == "GetCommonLinkProperties" {
			return [][2]string{{"NewWANAccessType", "Ethernet"}, {"NewLayer1UpstreamMaxBitRate", "1000000000"},
				{"NewLayer1DownstreamMaxBitRate", "1000000000"}, {"NewPhysicalLinkStatus", "Up"}}, nil
		}
		return nil, &upnpError{upnpInvalidAction, "Invalid Action"}
	}
	if service != urnIPConn1 && service != urnIPConn2 {
		return nil, &upnpError{upnpInvalidAction, "Invalid Action"}
	}
	switch action {
	case "GetExternalIPAddress":
		return [][2]string{{"NewExternalIPAddress", g.lab.WAN(g.nat).String()}}, nil
	case "GetStatusInfo":
		up := int(time.Since(g.start) / time.Second)
		return [][2]string{{"NewConnectionStatus", "Connected"}, {"NewLastConnectionError", "ERROR_NONE"}, {"NewUptime", strconv.Itoa(up)}}, nil
	case "GetConnectionTypeInfo":
		return [][2]string{{"NewConnectionType", "IP_Routed"}, {"NewPossibleConnectionTypes", "IP_Routed"}}, nil
	case "AddPortMapping":
		return nil, g.addPortMapping(service, in)
	case "DeletePortMapping":
		ext, err := mappingKey(in)
		if err != nil {
			return nil, err
		}
		return nil, g.deletePortMapping(ext)
	case "GetSpecificPortMappingEntry":
		ext, err := mappingKey(in)
		if err != nil {
			return nil, err
		}
		m, ok := g.mapping(ext)
		if !ok {
			return nil, &upnpError{upnpNoSuchEntry, "NoSuchEntryInArray"}
		}
		return [][2]string{{"NewInternalPort", strconv.Itoa(int(m.Internal.Port()))}, {"NewInternalClient", m.Internal.Addr().String()},
			{"NewEnabled", "1"}, {"NewPortMappingDescription", m.Description}, {"NewLeaseDuration", remaining(m)}}, nil
	case "GetGenericPortMappingEntry":
		i, err := strconv.Atoi(in["NewPortMappingIndex"])
		maps := g.Mappings()
		if err != nil || i < 0 || i >= len(maps) {
			return nil, &upnpError{upnpArrayIndex, "SpecifiedArrayIndexInvalid"}
		}
		m := maps[i]
		return [][2]string{{"NewRemoteHost", ""}, {"NewExternalPort", strconv.Itoa(int(m.External))}, {"NewProtocol", "UDP"},
			{"NewInternalPort", strconv.Itoa(int(m.Internal.Port()))}, {"NewInternalClient", m.Internal.Addr().String()},
			{"NewEnabled", "1"}, {"NewPortMappingDescription", m.Description}, {"NewLeaseDuration", remaining(&m)}}, nil
	}
	return nil, &upnpError{upnpInvalidAction, "Invalid Action"}
}

// mappingKey checks the (NewRemoteHost, NewExternalPort, NewProtocol) that
// names a mapping and returns the external port.
func mappingKey(in map[string]string) (uint16, error) {
	if in["NewRemoteHost"] != "" {
		return 0, &upnpError{upnpRemoteWildcard, "RemoteHostOnlySupportsWildcard"}
	}
	ext, err := strconv.ParseUint(in["NewExternalPort"], 10, 16)
	if err != nil {
		return 0, &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	if ext == 0 {
		return 0, &upnpError{upnpWildcardExt, "WildCardNotPermittedInExtPort"}
	}
	// Only UDP is mapped: the lab's NAT modes are about UDP.
	if !strings.EqualFold(in["NewProtocol"], "UDP") {
		return 0, &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	return uint16(ext), nil
}

func remaining(m *PortMapping) string {
	if m.Lease == 0 {
		return "0"
	}
	return strconv.Itoa(max(int((time.Until(m.expires)+time.Second-1)/time.Second), 1))
}

func (g *Gateway) mapping(ext uint16) (*PortMapping, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.mappings[ext]
	if !ok {
		return nil, false
	}
	c := *m
	return &c, true
}

// addPortMapping is AddPortMapping (WANIPConnection:2 §2.3.16): a new
// mapping, or new description and lease for an existing one of the same
// client. A disabled mapping is refused rather than stored unused.
func (g *Gateway) addPortMapping(service string, in map[string]string) error {
	ext, err := mappingKey(in)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(in["NewInternalPort"], 10, 16)
	if err != nil || port == 0 {
		return &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	client, err := netip.ParseAddr(in["NewInternalClient"])
	if err != nil || !client.Is4() || !g.lan.Contains(client) || client == g.lanIP {
		return &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	if en := in["NewEnabled"]; en != "1" && !strings.EqualFold(en, "true") {
		return &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	secs, err := strconv.ParseUint(in["NewLeaseDuration"], 10, 32)
	if err != nil {
		return &upnpError{upnpInvalidArgs, "Invalid Args"}
	}
	lease := time.Duration(secs) * time.Second
	if lease == 0 && service == urnIPConn2 {
		lease = maxLeaseV2
	}
	m := &PortMapping{External: uint16(ext), Internal: netip.AddrPortFrom(client, uint16(port)),
		Description: in["NewPortMappingDescription"], Lease: lease}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return &upnpError{upnpActionFailed, "Action Failed"}
	}
	old, exists := g.mappings[m.External]
	if exists && old.Internal != m.Internal {
		return &upnpError{upnpConflict, "ConflictInMappingEntry"}
	}
	for _, o := range g.mappings {
		// One external port per LAN endpoint: its first flow must know
		// which port to leave from.
		if o.Internal == m.Internal && o.External != m.External {
			return &upnpError{upnpConflict, "ConflictInMappingEntry"}
		}
	}
	if !exists {
		if err := g.nft(mappingScript(true, *m, g.lab.WAN(g.nat))); err != nil {
			g.lab.log.Warn("lab: UPnP mapping not installed", "nat", g.nat, "err", err)
			return &upnpError{upnpActionFailed, "Action Failed"}
		}
	} else if old.timer != nil {
		old.timer.Stop()
	}
	if lease > 0 {
		m.expires = time.Now().Add(lease)
		m.timer = time.AfterFunc(lease, func() { g.expire(m) })
	}
	g.mappings[m.External] = m
	g.lab.log.Info("lab: UPnP mapping", "nat", g.nat, "external", m.External, "internal", m.Internal, "lease", lease)
	return nil
}

func (g *Gateway) deletePortMapping(ext uint16) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.mappings[ext]
	if !ok {
		return &upnpError{upnpNoSuchEntry, "NoSuchEntryInArray"}
	}
	return g.removeLocked(m)
}

// expire removes a mapping whose lease ran out, unless it was renewed or
// removed meanwhile.
func (g *Gateway) expire(m *PortMapping) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mappings[m.External] == m {
		_ = g.removeLocked(m)
	}
}

func (g *Gateway) removeLocked(m *PortMapping) error {
	if m.timer != nil {
		m.timer.Stop()
	}
	delete(g.mappings, m.External)
	if err := g.nft(mappingScript(false, *m, netip.Addr{})); err != nil {
		g.lab.log.Warn("lab: UPnP mapping not removed", "nat", g.nat, "err", err)
		return &upnpError{upnpActionFailed, "Action Failed"}
	}
	g.lab.log.Info("lab: UPnP mapping removed", "nat", g.nat, "external", m.External)
	return nil
}

// nft runs an nft(8) script in the NAT box.
func (g *Gateway) nft(script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := g.lab.Host(g.nat).RunInput(ctx, script, "nft", "-f", "-")
	return err
}
