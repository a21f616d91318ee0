#!/bin/bash
# Builds the demo guest (a Debian kernel + busybox initramfs) used by examples/qemu.
# Derived from the team's shared/dut/build-qemu-dut.sh; run: sudo ./build-guest.sh OUTDIR
# Build a tiny bootable Linux DUT for QEMU from Debian packages only:
#   OUTDIR/kernel      Debian kernel: linux-image-cloud-amd64 (unpacked to an ELF vmlinux,
#                      which QEMU boots directly) or linux-image-arm64 (its Image)
#   OUTDIR/initrd.img  busybox-static initramfs: serial shell, DHCP, httpd :80,
#                      dropbear sshd :22 and telnetd :23 (root, empty password),
#                      acpid (graceful power-off), auto-mounts a disk at /mnt/disk
#   OUTDIR/dut.env     facts for the harness (arch, qemu binary, console, kernel version)
# Nothing goes into the host's /boot or /lib/modules: the kernel, busybox and dropbear
# .debs are fetched with `apt-get download` into OUTDIR/cache and unpacked from there.
# Host tools (QEMU, and lz4 for amd64) are apt-installed if missing, which needs root.
#
# Usage: build-qemu-dut.sh [--arch amd64|arm64] [--no-ssh] [--force] OUTDIR
# Re-running is cheap: if OUTDIR was built by this same script, it exits at once;
# --force rebuilds it (picking up a newer Debian kernel, if any).
set -euo pipefail

ARCH=amd64 FORCE=0 SSH=1 OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --arch) ARCH=$2; shift 2 ;;
        --no-ssh) SSH=0; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || { echo "usage: $0 [--arch amd64|arm64] [--no-ssh] [--force] OUTDIR" >&2; exit 2; }

case $ARCH in
    # amd64: the cloud flavour is the smallest kernel. arm64: the generic one, as the cloud
    # one lacks gpio_keys, the driver of the 'virt' machine's power button.
    amd64) QEMU_PKG=qemu-system-x86 QEMU_BIN=qemu-system-x86_64 CONSOLE=ttyS0 TOOLS="lz4"
           KMETA=linux-image-cloud-amd64 EXTRA_MODS="button" ;;
    arm64) QEMU_PKG=qemu-system-arm QEMU_BIN=qemu-system-aarch64 CONSOLE=ttyAMA0 TOOLS=
           KMETA=linux-image-arm64 EXTRA_MODS="gpio_keys" ;;
    *) echo "unsupported arch: $ARCH" >&2; exit 2 ;;
esac
# Modules to load at boot, with their dependencies; those built into the kernel are skipped.
MODS="virtio_pci virtio_net virtio_blk evdev crc32c_generic ext4 vfat nls_cp437 nls_iso8859-1 $EXTRA_MODS"

# --- 1. host tools and .debs (apt only) ---------------------------------------
have_candidate() { apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; }
MISSING=
command -v "$QEMU_BIN" >/dev/null || MISSING=$QEMU_PKG
for t in $TOOLS; do command -v "$t" >/dev/null || MISSING="$MISSING $t"; done
if [ -n "$MISSING" ]; then
    have_candidate "$QEMU_PKG" || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING
fi

mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
BUILD_ID="$ARCH-ssh$SSH-$(sha256sum "$0" | cut -c1-16)"
if [ $FORCE = 0 ] && [ -f "$OUT/initrd.img" ] && grep -qx "DUT_BUILD_ID=$BUILD_ID" "$OUT/dut.env" 2>/dev/null; then
    echo "DUT up to date in $OUT"; exit 0
fi

HOSTARCH=$(dpkg --print-architecture)
if [ "$ARCH" != "$HOSTARCH" ] && ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    dpkg --add-architecture "$ARCH"         # only to *download* the guest's .debs
fi
have_candidate "$KMETA:$ARCH" || apt-get update -qq
# The meta package depends on the current kernel, e.g. linux-image-6.1.0-56-cloud-amd64.
KPKG=$(apt-cache show --no-all-versions "$KMETA:$ARCH" | sed -n 's/^Depends: \([^ ,]*\).*/\1/p')
PKGS=("$KPKG:$ARCH" "busybox-static:$ARCH")
[ "$ARCH" = "$HOSTARCH" ] || PKGS+=("busybox-static:$HOSTARCH")   # one that runs here, for cpio
SSH_PKGS="dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g"
if [ $SSH = 1 ]; then for p in $SSH_PKGS; do PKGS+=("$p:$ARCH"); done; fi
# Candidate version of each package -> its .deb in OUTDIR/cache; download the missing ones at once.
declare -A DEB
mapfile -t VERS < <(apt-cache policy "${PKGS[@]}" | sed -n 's/ *Candidate: //p')
if [ ${#VERS[@]} != ${#PKGS[@]} ] || [[ " ${VERS[*]} " == *" (none) "* ]]; then
    echo "apt has no candidate for some of: ${PKGS[*]}" >&2; exit 1
fi
MISSING=()
for i in "${!PKGS[@]}"; do
    p=${PKGS[i]}
    DEB[$p]=$OUT/cache/${p%%:*}_${VERS[i]/:/%3a}_${p##*:}.deb   # apt's file name for it
    [ -f "${DEB[$p]}" ] || MISSING+=("$p")
done
if [ ${#MISSING[@]} -gt 0 ]; then
    (cd "$OUT/cache" && apt-get download -qq -o APT::Sandbox::User=root "${MISSING[@]}")
fi
for f in "$OUT"/cache/*.deb; do     # drop what is no longer needed (older versions)
    [[ " ${DEB[*]} " == *" $f "* ]] || rm -f "$f"
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "${DEB[$KPKG:$ARCH]}" "$WORK/k"
dpkg-deb -x "${DEB[busybox-static:$ARCH]}" "$WORK/bb"
dpkg-deb -x "${DEB[busybox-static:$HOSTARCH]}" "$WORK/hostbb"
KVER=$(ls "$WORK/k/lib/modules")
MODDIR=$WORK/k/lib/modules/$KVER
HOSTBB=$WORK/hostbb/bin/busybox

# --- 2. kernel ---------------------------------------------------------------------
cp "$WORK/k/boot/vmlinuz-$KVER" "$WORK/kernel"
if [ "$ARCH" = amd64 ] && command -v lz4 >/dev/null; then
    # Unpack the bzImage's LZ4 payload (an ELF vmlinux with a PVH entry point). QEMU boots it
    # without the guest-side decompressor: ~0.5 s faster, and under TCG a reset is 2-3x faster
    # (the decompressor rewrites memory that held translated code, a slow path for TCG).
    for off in $(LC_ALL=C grep -abo $'\x02\x21\x4c\x18' "$WORK/kernel" | head -n3 | cut -d: -f1); do
        tail -c +$((off + 1)) "$WORK/kernel" | lz4 -dc > "$WORK/vmlinux" 2>/dev/null || true
        if [ "$(head -c4 "$WORK/vmlinux")" = $'\x7fELF' ]; then mv "$WORK/vmlinux" "$WORK/kernel"; break; fi
    done
fi

# --- 3. initramfs tree ---------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc/init.d,etc/acpi/PWRF,www/cgi-bin,mnt/disk,lib/modules,var/log}
cp "$WORK/bb/bin/busybox" "$R/bin/busybox"
for p in $("$HOSTBB" --list-full); do [ -e "$R/$p" ] || ln -s /bin/busybox "$R/$p"; done
if [ $SSH = 1 ]; then   # dropbear plus the few shared libraries it links, picked out of their .debs
    for p in $SSH_PKGS; do dpkg-deb -x "${DEB[$p:$ARCH]}" "$WORK/ssh"; done
    # shellcheck disable=SC2046   # (plain file names: word splitting is intended)
    (cd "$WORK/ssh" && cp -a --parents ./usr/sbin/dropbear $(find . -name 'ld-linux*' -o -name libc.so.6 \
        -o -name 'libcrypt.so.1*' -o -name 'libz.so.1*' -o -name 'libtom*.so.1*' -o -name 'libgmp.so.10*') "$R/")
    mkdir -p "$R/etc/dropbear"              # dropbear -R writes its host keys there
    echo /bin/sh > "$R/etc/shells"
fi
# Without this node the kernel warns "unable to open an initial console" (/init copes).
if [ "$(id -u)" = 0 ]; then mknod -m 600 "$R/dev/console" c 5 1; fi

# Kernel modules: follow the "depends=" field of each .ko, so dependencies load first.
ORDER=$R/lib/modules/load-order; : > "$ORDER"
add_mod() {
    local m=$1 f d
    f=$(find "$MODDIR/kernel" \( -name "$m.ko" -o -name "$(echo "$m" | tr _ -).ko" -o -name "$(echo "$m" | tr - _).ko" \) -print -quit)
    if [ -z "$f" ]; then
        grep -q "/$m.ko\$" "$MODDIR/modules.builtin" || echo "note: no module $m in $KVER" >&2
        return 0
    fi
    f=${f#$MODDIR/}
    grep -qx "$f" "$ORDER" && return 0
    for d in $(grep -a -o 'depends=[a-z0-9_,-]*' "$MODDIR/$f" | cut -d= -f2 | tr , ' '); do add_mod "$d"; done
    mkdir -p "$R/lib/modules/$(dirname "$f")"
    cp "$MODDIR/$f" "$R/lib/modules/$f"
    echo "$f" >> "$ORDER"
}
for m in $MODS; do add_mod "$m"; done

cat > "$R/init" <<'EOF'
#!/bin/busybox sh
# PID 1: make /dev usable, then hand over to busybox init (reads /etc/inittab).
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec 0<>/dev/console 1>&0 2>&0
exec /sbin/init
EOF
cat > "$R/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
EOF
cat > "$R/etc/init.d/rcS" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname dut
while read -r m; do insmod "/lib/modules/$m" || echo "dut: insmod $m failed"; done < /lib/modules/load-order
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    udhcpc -i eth0 -q -n -t 5 -T 1 -s /etc/udhcpc.sh >/dev/null 2>&1 || echo "dut: DHCP failed"
fi
httpd -p 80 -h /www
telnetd -p 23 -l /bin/sh
if [ -x /usr/sbin/dropbear ]; then      # -R: make host keys on first use; -B: allow empty password
    dropbear -R -B -p 22 || echo "dut: dropbear failed"
fi
acpid                                   # power button -> /etc/acpi/PWRF/00000080 -> poweroff (log: /var/log/acpid.log)
for d in /dev/vda /dev/nvme0n1 /dev/sda; do  # first disk that has a filesystem -> /mnt/disk (ro)
    [ -b "$d" ] && mount -o ro "$d" /mnt/disk 2>/dev/null && break
done
echo "dut: ready"
EOF
cat > "$R/etc/udhcpc.sh" <<'EOF'
#!/bin/sh
case $1 in bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
    for r in $router; do route add default gw "$r" dev "$interface"; break; done
    : > /etc/resolv.conf; for s in $dns; do echo "nameserver $s" >> /etc/resolv.conf; done ;;
esac
EOF
printf '#!/bin/sh\npoweroff\n' > "$R/etc/acpi/PWRF/00000080"
cat > "$R/etc/profile" <<'EOF'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root PS1='root@dut:\w# '
cd /root
EOF
echo 'root::0:0:root:/root:/bin/sh' > "$R/etc/passwd"   # root, no password
echo 'root:x:0:' > "$R/etc/group"
echo "<html><body>dut ok</body></html>" > "$R/www/index.html"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nuname -a\ncat /proc/cmdline\n' > "$R/www/cgi-bin/info"
chmod 755 "$R/init" "$R/etc/init.d/rcS" "$R/etc/udhcpc.sh" "$R/etc/acpi/PWRF/00000080" "$R/www/cgi-bin/info"

# --- 4. pack -------------------------------------------------------------------------
(cd "$R" && find . | sort | "$HOSTBB" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -6 > "$WORK/initrd.img"
mv "$WORK/kernel" "$OUT/kernel"
mv "$WORK/initrd.img" "$OUT/initrd.img"
rm -f "$OUT/vmlinuz"                       # left by older versions of this script
cat > "$OUT/dut.env" <<EOF
DUT_ARCH=$ARCH
DUT_QEMU=$QEMU_BIN
DUT_CONSOLE=$CONSOLE
DUT_KERNEL_VERSION=$KVER
DUT_SSH=$SSH
DUT_BUILD_ID=$BUILD_ID
EOF
echo "DUT built in $OUT: $KVER, kernel $(du -h "$OUT/kernel" | cut -f1), initrd $(du -h "$OUT/initrd.img" | cut -f1)"
