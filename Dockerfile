# vxland's container image: a static vxland on distroless/static (CA
# certificates, /etc/passwd, no shell, no C library). Build it with
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t vxland .
# deploy/kube-vxland.yml runs it as a DaemonSet.

FROM golang:1.26 AS build
WORKDIR /src
# The modules first, so that a change to the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the build context: the version comes as an argument.
ARG VERSION=devel
RUN make static BIN=/out VERSION=$VERSION

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/vxland /usr/bin/vxland
COPY --from=build /src/LICENSE /usr/share/doc/vxland/LICENSE
# Root, because vxland creates its TAP and refuses to run as anyone else;
# the DaemonSet gives it NET_ADMIN and nothing else.
USER 0
ENTRYPOINT ["/usr/bin/vxland"]
