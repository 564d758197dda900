// Package codec rewrites the selected values of request and response bodies
// (JSON and application/x-www-form-urlencoded) in one streaming pass, copying
// every unselected byte through unchanged.
package codec
