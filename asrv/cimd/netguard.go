package cimd

import (
	"fmt"
	"net/netip"
	"syscall"
)

// specialPurpose are the address blocks a Resolver never dials unless
// Config.AllowNetworks allows them: the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (RFC 6890 and its updates), private and shared address
// space, multicast, reserved space, and the IPv6 blocks that embed an IPv4
// address (NAT64, 6to4, Teredo) and so could reach any of the former. The
// draft ("Server Side Request Forgery (SSRF) Attacks"): the AS MUST
// validate that the document URL does not resolve to special-use addresses.
var specialPurpose = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network" (RFC 791), 0.0.0.0 unspecified
		"10.0.0.0/8",      // private (RFC 1918)
		"100.64.0.0/10",   // shared address space, CGN (RFC 6598)
		"127.0.0.0/8",     // loopback (RFC 1122)
		"169.254.0.0/16",  // link-local (RFC 3927), cloud metadata endpoints
		"172.16.0.0/12",   // private (RFC 1918)
		"192.0.0.0/24",    // IETF protocol assignments (RFC 6890)
		"192.0.2.0/24",    // documentation TEST-NET-1 (RFC 5737)
		"192.31.196.0/24", // AS112-v4 (RFC 7535)
		"192.52.193.0/24", // AMT (RFC 7450)
		"192.88.99.0/24",  // deprecated 6to4 relay anycast (RFC 7526)
		"192.168.0.0/16",  // private (RFC 1918)
		"192.175.48.0/24", // direct delegation AS112 (RFC 7534)
		"198.18.0.0/15",   // benchmarking (RFC 2544)
		"198.51.100.0/24", // documentation TEST-NET-2 (RFC 5737)
		"203.0.113.0/24",  // documentation TEST-NET-3 (RFC 5737)
		"224.0.0.0/4",     // multicast (RFC 5771)
		"240.0.0.0/4",     // reserved (RFC 1112), 255.255.255.255 broadcast
		// IPv6
		"::/8",           // unspecified, loopback, IPv4-compatible, IPv4-mapped (checked unmapped too)
		"64:ff9b::/96",   // NAT64 well-known prefix (RFC 6052)
		"64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
		"100::/64",       // discard-only (RFC 6666)
		"2001::/23",      // IETF protocol assignments, Teredo (RFC 2928, RFC 4380)
		"2001:db8::/32",  // documentation (RFC 3849)
		"2002::/16",      // 6to4 (RFC 3056)
		"3fff::/20",      // documentation (RFC 9637)
		"5f00::/16",      // segment routing SIDs (RFC 9602)
		"fc00::/7",       // unique local (RFC 4193)
		"fe80::/10",      // link-local (RFC 4291)
		"fec0::/10",      // deprecated site-local (RFC 3879)
		"ff00::/8",       // multicast (RFC 4291)
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// addressPolicy decides which addresses a Resolver may dial.
type addressPolicy struct {
	allow []netip.Prefix
}

// check refuses a special-purpose address outside the allowed networks. An
// IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
func (p addressPolicy) check(a netip.Addr) error {
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	for _, pre := range p.allow {
		if pre.Contains(a) {
			return nil
		}
	}
	if !a.IsValid() {
		return fmt.Errorf("%w: no address", ErrNotAllowed)
	}
	for _, pre := range specialPurpose {
		if pre.Contains(a) {
			return fmt.Errorf("%w: %s is a special-purpose address (%s)", ErrNotAllowed, a, pre)
		}
	}
	return nil
}

// control is the net.Dialer Control hook: it sees the address about to be
// dialled, after name resolution, for every address the dialer tries.
func (p addressPolicy) control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("%w: network %s", ErrNotAllowed, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrNotAllowed, address)
	}
	return p.check(ap.Addr())
}
