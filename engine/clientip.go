package engine

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientAddr returns the client's address: the peer, unless the peer is
// a trusted proxy, in which case the addresses its X-Forwarded-For (or,
// without one, Forwarded) header lists are walked from the right, and the
// first that is not a trusted proxy is the client. An entry that does not
// parse stops the walk at the hop that wrote it: nothing left of it can
// be believed.
func clientAddr(peer netip.Addr, h http.Header, trusted []netip.Prefix) netip.Addr {
	if !peer.IsValid() || len(trusted) == 0 || !inPrefixes(peer, trusted) {
		return peer
	}
	hops := forwardedFor(h)
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		addr, ok := parseHop(hops[i])
		if !ok {
			return client
		}
		client = addr
		if !inPrefixes(addr, trusted) {
			return addr
		}
	}
	return client
}

func inPrefixes(a netip.Addr, list []netip.Prefix) bool {
	a = a.Unmap()
	return slices.ContainsFunc(list, func(p netip.Prefix) bool { return p.Contains(a) })
}

// forwardedFor lists the hops of X-Forwarded-For, or of Forwarded's for=
// parameters (RFC 7239) when there is no X-Forwarded-For, in order.
func forwardedFor(h http.Header) []string {
	var hops []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			for hop := range strings.SplitSeq(v, ",") {
				hops = append(hops, strings.TrimSpace(hop))
			}
		}
		return hops
	}
	for _, v := range h.Values("Forwarded") {
		for elem := range strings.SplitSeq(v, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					hops = append(hops, strings.Trim(val, `"`))
				}
			}
		}
	}
	return hops
}

// parseHop reads one hop: an IP address, with or without a port, IPv6 in
// brackets when it has one.
func parseHop(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
