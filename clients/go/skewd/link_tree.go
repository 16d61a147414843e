//go:build !skewd_static && !skewd_pkgconfig

package skewd

// The default: this source tree's shared library, found at run time
// through an rpath (build it first: cargo build --release --workspace).
// The binary needs target/release/libskewd_c.so where it was built.

// #cgo CFLAGS: -I${SRCDIR}/../../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../../target/release -lskewd_c -Wl,-rpath,${SRCDIR}/../../../target/release
import "C"
