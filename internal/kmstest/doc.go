// Package kmstest runs an in-process AWS KMS (JSON 1.1 protocol) on loopback, for tests of code that calls KMS through the AWS SDK v2.
package kmstest
