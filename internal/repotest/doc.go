// Package repotest holds tests about the repository as a whole: every
// package documents what it owns, and the weft binary's dependencies stay
// on an allowlist. It has no code of its own.
package repotest
