# syntax=docker/dockerfile:1
# phiguard and the demo messaging app as static, non-root images.
#   docker build --pull --target phiguard --build-arg VERSION=$(git describe --tags --always) -t phiguard .
#   docker build --pull --target messaging-app -t messaging-app .
# Without --target, the phiguard image is built. --pull fetches the newest
# golang:1.26, which go.mod's go line needs (the image does not download
# toolchains).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/phiguard ./cmd/phiguard && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/messaging-app ./examples/messaging-app && \
    mkdir /out/data

# The demo app that phiguard protects. It keeps its store in /data.
FROM gcr.io/distroless/static-debian12:nonroot AS messaging-app
COPY --from=build /out/messaging-app /messaging-app
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENTRYPOINT ["/messaging-app"]
CMD ["-listen", "127.0.0.1:8080", "-store", "/data/store.json"]

# The sidecar. Mount a policy at /etc/phiguard/policy.yaml, or pass
# serve -config FILE.
FROM gcr.io/distroless/static-debian12:nonroot AS phiguard
COPY --from=build /out/phiguard /phiguard
USER 65532:65532
EXPOSE 8443 9901
ENTRYPOINT ["/phiguard"]
CMD ["serve", "-config", "/etc/phiguard/policy.yaml"]
