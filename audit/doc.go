// Package audit writes one JSON record per request that touches PHI or is
// refused: who, what route, which field paths and how many, the decision
// and why; never a value.
package audit
