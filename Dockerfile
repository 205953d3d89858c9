# Container image of the relay: a static binary on distroless, non-root.
#
#   docker build --build-arg VERSION=v0.1.0 -t clusterlink-relay:0.1.0 .
#   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 clusterlink-relay:0.1.0
#
# See docs/OPERATIONS.md, "Container image".

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Empty: the binary falls back to the module version ("(devel)" here).
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/relaynode ./relaynode/cmd/relaynode

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relaynode /relaynode
# The nonroot user of distroless (65532), by number so that a runtime can
# check it is not root.
USER 65532:65532
# Inside the container the relay serves every interface: the public port
# (the -listen default's, 8080) and the admin port, which the HEALTHCHECK
# reaches on loopback. Publish 9090 on a private address only.
ENV RELAYNODE_LISTEN=:8080 \
    RELAYNODE_ADMIN_LISTEN=:9090
EXPOSE 8080 9090
# distroless has no shell or curl: the binary probes /healthz itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/relaynode", "-healthcheck", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/relaynode"]
