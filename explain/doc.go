// Package explain runs a sample request (and answer) through the engine with stand-in keys, caller and audit trail, and says where each selector acted, never what it found.
package explain
