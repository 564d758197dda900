// Package audit writes one JSON record per request that touches PHI or is
// refused: who, what route, which field paths and how many, the decision
// and why; never a value. A record is encoded once and handed to every
// sink, and Auditor.Record returns only when each sink has written it or
// failed, so a fail-closed caller refuses a request it could not record.
package audit
