// Package dlp is a data-loss-prevention guardrail for field values bound for
// a vendor without a BAA: it finds PHI-looking content (SSNs, medical record
// numbers, dates of birth, phone numbers, e-mail addresses, ICD-10-CM codes)
// and reports which detectors matched or redacts the matches. It names
// detectors, never a matched value, in anything it returns.
package dlp
