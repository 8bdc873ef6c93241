// The pod sandbox's process (what registry.k8s.io/pause does): it holds the pod's namespaces and
// sleeps until SIGINT or SIGTERM. As PID 1 of a pod that shares its PID namespace it also reaps
// orphaned children. Built static by dev/k8s.sh and imported into containerd as the sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
