// Package consent is each org's registry of patients' consent to SMS: an
// inbound STOP or START (Keywords.Classify) records a Revoked or Granted
// Entry, and a sender refuses a number whose latest entry is Revoked, or
// not Granted when its org requires consent. Numbers are never stored: an
// entry names a keyed hash of the normalized number (Normalize), and a
// store that cannot answer is an error, so the caller refuses to send.
package consent
