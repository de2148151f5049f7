#!/usr/bin/env bash
# Build the three runtime images (mlc-train, mlc-serve, mlc-drift) from the repository
# root, with Docker or, where no Docker engine runs, buildah.
#
#   scripts/build-images.sh [--prefix ghcr.io/<org>/] [--tag 0.1.0] [--push]
#                           [--debian-base] [--wheelhouse DIR] [--check] [train serve drift]
#
#   --prefix       image names' prefix (default localhost/)
#   --tag          image tag (default: the package version in pyproject.toml)
#   --push         push each image and print its name@digest, for images: in ml.yaml
#   --debian-base  build the Python base image from Debian's packages (debootstrap), for
#                  machines that reach no container registry; needs root
#   --wheelhouse   a folder of wheels pip prefers (mounted into the build; buildah only)
#   --check        then run scripts/check_images.py on the images (the example's pipeline
#                  in the images, as their user)
#
# docs/images.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=localhost/
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
push=0 debian_base=0 wheelhouse="" check=0 names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --push) push=1; shift ;;
    --debian-base) debian_base=1; shift ;;
    --wheelhouse) wheelhouse=$(cd "$2" && pwd); shift 2 ;;
    --check) check=1; shift ;;
    train|serve|drift) names+=("$1"); shift ;;
    *) echo "build-images: unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(train serve drift)

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v buildah >/dev/null; then
  engine=buildah
  export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
else
  echo "build-images: no container engine: start Docker, or apt-get install buildah" >&2
  exit 1
fi

args=()
if [ "$debian_base" = 1 ]; then
  base=localhost/mlc-python-base:3.11-bookworm
  if ! $engine inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "build-images: --debian-base needs debootstrap" >&2; exit 1; }
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    # Debian's Python 3.11 with venv; the host's CA bundle, so that pip inside trusts what
    # the host trusts
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$root" http://deb.debian.org/debian >/dev/null
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    if [ "$engine" = docker ]; then
      tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' - "$base" >/dev/null
    else
      c=$(buildah from scratch)
      cp -a "$root"/. "$(buildah mount "$c")"/
      buildah umount "$c" >/dev/null
      buildah config --env LANG=C.UTF-8 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
      buildah commit -q "$c" "$base" >/dev/null
      buildah rm "$c" >/dev/null
    fi
    echo "built $base from Debian's packages"
  fi
  args+=(--build-arg "PYTHON_IMAGE=$base")
  # the serving image's default torch index is PyPI-external; with a wheelhouse, PyPI will do
  [ -z "$wheelhouse" ] || args+=(--build-arg TORCH_INDEX=https://pypi.org/simple)
fi
if [ -n "$wheelhouse" ]; then
  [ "$engine" = buildah ] || { echo "build-images: --wheelhouse needs buildah" >&2; exit 1; }
  args+=(--volume "$wheelhouse:/wheelhouse:ro" --build-arg WHEELHOUSE=/wheelhouse)
fi

for name in "${names[@]}"; do
  image="${prefix}mlc-$name:$tag"
  echo "building $image ($engine)"
  if [ "$engine" = docker ]; then
    docker build -f "mlc/runtime/$name/Dockerfile" "${args[@]}" -t "$image" .
  else
    buildah bud --format docker -f "mlc/runtime/$name/Dockerfile" "${args[@]}" -t "$image" .
  fi
  if [ "$push" = 1 ]; then
    if [ "$engine" = docker ]; then
      docker push "$image" >/dev/null
      digest=$(docker image inspect --format '{{index .RepoDigests 0}}' "$image")
    else
      buildah push --digestfile /tmp/mlc-digest "$image" >/dev/null
      digest="${image%:*}:$tag@$(cat /tmp/mlc-digest)"
    fi
    echo "pushed: images.$name: $digest"
  fi
done

if [ "$check" = 1 ]; then
  python scripts/check_images.py --engine "$engine" --prefix "$prefix" --tag "$tag"
fi
