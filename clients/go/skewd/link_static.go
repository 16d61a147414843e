//go:build skewd_static && !skewd_pkgconfig

package skewd

// go build -tags skewd_static: this source tree's static library linked
// into the Go binary (no libskewd_c.so needed at run time: the binary
// depends on system libraries alone, libc, libm and libgcc_s).

// #cgo CFLAGS: -I${SRCDIR}/../../../include
// #cgo LDFLAGS: ${SRCDIR}/../../../target/release/libskewd_c.a -lpthread -ldl -lm -lrt -lutil
import "C"
