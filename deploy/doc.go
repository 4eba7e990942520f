// Package deploy holds no code: it is the Go module of the deployment
// files' tests. The Kubernetes manifests under kubernetes/ are rendered
// with kustomize and decoded strictly into the Kubernetes API types, the
// containers' configuration is parsed by the real binaries, and the
// Dockerfile's build command is run as a plain go build. The Kubernetes
// modules stay here, out of Strait's own go.mod.
package deploy
