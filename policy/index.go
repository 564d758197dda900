package policy

import "strings"

// routeIndex is a trie of the literal segments that start route paths.
// A route is filed at the node of its literal prefix: the segments before
// its first {param}, ** or segment outside ASCII. A request path can only
// be taken by routes filed along its own segments, so matching tries
// those, in file order, instead of every route: most APIs share a prefix
// (/api/v1/…) and differ one or two segments further on.
type routeIndex struct {
	root trieNode
}

type trieNode struct {
	routes []int // indexes of the routes filed here, ascending
	next   map[string]*trieNode
}

func buildIndex(routes []*Route, caseSensitive bool) routeIndex {
	var ix routeIndex
	for i, r := range routes {
		n := &ix.root
		for _, s := range r.Path.segs {
			if s.kind != segLiteral || !isASCII(s.text) {
				break
			}
			key := foldKey(s.text, caseSensitive)
			child := n.next[key]
			if child == nil {
				if n.next == nil {
					n.next = map[string]*trieNode{}
				}
				child = &trieNode{}
				n.next[key] = child
			}
			n = child
		}
		n.routes = append(n.routes, i)
	}
	return ix
}

// candidates appends to lists the route lists filed along segs, each in
// ascending order. It returns false when the index cannot narrow the
// search because a segment is outside ASCII (Unicode case folding can
// make it equal to an ASCII literal): then every route is tried.
func (ix *routeIndex) candidates(lists [][]int, segs []string, caseSensitive bool) ([][]int, bool) {
	for _, s := range segs {
		if !isASCII(s) {
			return lists, false
		}
	}
	n := &ix.root
	lists = append(lists, n.routes)
	for _, s := range segs {
		if n = n.next[foldKey(s, caseSensitive)]; n == nil {
			break
		}
		lists = append(lists, n.routes)
	}
	return lists, true
}

// foldKey is the trie key of an ASCII segment: lower-cased unless paths
// are case-sensitive. For ASCII, that is exactly strings.EqualFold.
func foldKey(s string, caseSensitive bool) string {
	if caseSensitive {
		return s
	}
	return strings.ToLower(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
