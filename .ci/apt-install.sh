# Sourced by .ci/test.sh and .ci/install-test-tools.sh: one way to install a
# Debian package that provides a missing command.
#
#   apt_install_for COMMAND PACKAGE
#
# installs PACKAGE (without recommends) unless COMMAND is already on PATH;
# as root directly, else through sudo. The package lists are updated once per
# shell, before the first install.

apt_install_for() {
    local command=$1 package=$2
    if command -v "$command" >/dev/null 2>&1; then
        return 0
    fi
    echo "installing $package (for $command)..."
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if [ -z "${APT_INSTALL_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        APT_INSTALL_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}
