package dataplanev1

// Regenerate dataplane.pb.go and dataplane_grpc.pb.go from dataplane.proto,
// and drops_gen.go (the drop reasons of LegCounters, see internal/gendrops).
// Needs protoc (Debian: protobuf-compiler) and the two plugins:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//
//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative dataplane.proto
//go:generate sh -c "protoc -I . --include_source_info --descriptor_set_out=/dev/stdout dataplane.proto | go run ../../../../internal/gendrops > drops_gen.go"
