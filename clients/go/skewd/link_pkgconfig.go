//go:build skewd_pkgconfig

package skewd

// go build -tags skewd_pkgconfig: the installed header and library, as
// pkg-config names them (skewd.pc: -I/usr/include, -lskewd_c).

// #cgo pkg-config: skewd
import "C"
