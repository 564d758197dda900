// Package search turns values into what phiguard's searchable fields are
// computed from: the normalized form of an exact-match value (so that
// equal values seal to equal tokens), and the words of a free text (each
// of which becomes a keyed index word). It holds no keys and never
// returns a value inside an error.
package search
