// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 at the
// version that ../versions.env pins. The etcd repository keeps its own main
// package in a module that the Go module proxy does not serve, so this file
// calls the same entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
