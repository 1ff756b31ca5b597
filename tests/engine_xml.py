"""Domain XMLs as an oVirt engine sends them for ordinary VMs (modelled on
ovirt-engine's LibvirtVmXmlBuilder output, 4.4/4.5): the allowlist must
take them. `images` is the image directory their disks are in; make_images
creates the files they name (a qcow2 needs qemu-img)."""

import os
import shutil
import subprocess

OVIRT_NS = "http://ovirt.org/vm/tune/1.0"
OVIRT_VM_NS = "http://ovirt.org/vm/1.0"


def q35_vm(vm_id, images, domain_type="kvm"):
    """A q35 Linux server: a qcow2 disk and a raw disk, an empty cdrom, two
    NICs (network and bridge), spice and vnc, the guest agent channel, rng
    from /dev/urandom, NUMA, hyperv bits, sysinfo, a lease-free VM."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<domain type="{domain_type}" xmlns:ovirt-tune="{OVIRT_NS}"
        xmlns:ovirt-vm="{OVIRT_VM_NS}">
  <name>rhel8-web-{vm_id[:8]}</name>
  <uuid>{vm_id}</uuid>
  <memory unit="KiB">4194304</memory>
  <currentMemory unit="KiB">4194304</currentMemory>
  <iothreads>1</iothreads>
  <maxMemory slots="16" unit="KiB">16777216</maxMemory>
  <vcpu current="2">16</vcpu>
  <sysinfo type="smbios">
    <system>
      <entry name="manufacturer">oVirt</entry>
      <entry name="product">RHEL</entry>
      <entry name="version">8.6-1.el8</entry>
      <entry name="serial">4c4c4544-0038-3510-8052-b4c04f4e4a32</entry>
      <entry name="uuid">{vm_id}</entry>
      <entry name="family">oVirt</entry>
    </system>
  </sysinfo>
  <clock offset="variable" adjustment="0">
    <timer name="rtc" tickpolicy="catchup"/>
    <timer name="pit" tickpolicy="delay"/>
    <timer name="hpet" present="no"/>
  </clock>
  <features>
    <acpi/>
    <vmcoreinfo/>
    <smm state="on"/>
  </features>
  <cpu match="exact">
    <model>Skylake-Server</model>
    <feature name="spec-ctrl" policy="require"/>
    <topology cores="1" threads="1" sockets="16"/>
    <numa>
      <cell id="0" cpus="0-15" memory="4194304"/>
    </numa>
  </cpu>
  <cputune/>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch="x86_64" machine="pc-q35-rhel8.6.0">hvm</type>
    <smbios mode="sysinfo"/>
    <bios useserial="yes"/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled="no"/>
    <suspend-to-disk enabled="no"/>
  </pm>
  <devices>
    <input type="tablet" bus="usb"/>
    <channel type="unix">
      <target type="virtio" name="ovirt-guest-agent.0"/>
      <source mode="bind" path="{images}/channels/{vm_id}.ovirt-guest-agent.0"/>
    </channel>
    <channel type="unix">
      <target type="virtio" name="org.qemu.guest_agent.0"/>
      <source mode="bind" path="{images}/channels/{vm_id}.org.qemu.guest_agent.0"/>
    </channel>
    <controller type="usb" model="qemu-xhci" index="0" ports="8">
      <alias name="ua-0e0d6b36-2bd0-4b2b-8a92-6a5a7bd2a5f4"/>
    </controller>
    <controller type="pci" model="pcie-root-port" index="1">
      <address bus="0x00" domain="0x0000" function="0x0" slot="0x02" type="pci" multifunction="on"/>
    </controller>
    <controller type="pci" model="pcie-root"/>
    <controller type="scsi" model="virtio-scsi" index="0">
      <driver iothread="1"/>
      <alias name="ua-2f8b0a10-3a6c-4d8e-9f42-7f2f0b6f3d11"/>
    </controller>
    <controller type="virtio-serial" index="0" ports="16">
      <alias name="ua-8a1e3f7c-5c44-4b0a-b7a8-1b0b1f6a0c9e"/>
    </controller>
    <controller type="sata" index="0"/>
    <rng model="virtio">
      <backend model="random">/dev/urandom</backend>
      <alias name="ua-9c5e6f0a-3b22-4f3e-8d0c-0d9b4b2a7e11"/>
    </rng>
    <memballoon model="virtio">
      <stats period="5"/>
      <alias name="ua-c6b4d8e0-2e5a-4b5b-9a1f-3f7a3c1e2b44"/>
    </memballoon>
    <video>
      <model type="qxl" vram="32768" heads="1" ram="65536" vgamem="16384"/>
      <alias name="ua-d3b7a1c2-6f4e-4a8b-9b2d-5e3c1a0f7d22"/>
    </video>
    <graphics type="spice" port="-1" autoport="yes" passwd="*****"
              passwdValidTo="1970-01-01T00:00:01" tlsPort="-1">
      <channel name="main" mode="secure"/>
      <channel name="inputs" mode="secure"/>
      <channel name="cursor" mode="secure"/>
      <channel name="playback" mode="secure"/>
      <channel name="record" mode="secure"/>
      <channel name="display" mode="secure"/>
      <channel name="smartcard" mode="secure"/>
      <channel name="usbredir" mode="secure"/>
      <listen type="network" network="vdsm-ovirtmgmt"/>
    </graphics>
    <graphics type="vnc" port="-1" autoport="yes" passwd="*****"
              passwdValidTo="1970-01-01T00:00:01" keymap="en-us">
      <listen type="network" network="vdsm-ovirtmgmt"/>
    </graphics>
    <channel type="spicevmc">
      <target type="virtio" name="com.redhat.spice.0"/>
    </channel>
    <interface type="bridge">
      <model type="virtio"/>
      <link state="up"/>
      <source bridge="ovirtmgmt"/>
      <driver queues="2" name="vhost"/>
      <alias name="ua-5f0d7a3e-8c1b-4d2e-a6f9-0b3c2d1e4f55"/>
      <address bus="0x01" domain="0x0000" function="0x0" slot="0x00" type="pci"/>
      <mac address="56:6f:16:a8:00:01"/>
      <mtu size="1500"/>
      <filterref filter="vdsm-no-mac-spoofing"/>
      <bandwidth/>
    </interface>
    <interface type="network">
      <model type="virtio"/>
      <source network="vdsm-storage"/>
      <mac address="56:6f:16:a8:00:02"/>
      <alias name="ua-6a1e8b4f-9d2c-4e3f-b7a0-1c4d3e2f5a66"/>
    </interface>
    <disk type="file" device="cdrom" snapshot="no">
      <driver name="qemu" type="raw" error_policy="report"/>
      <source file="" startupPolicy="optional"/>
      <target dev="sdc" bus="sata"/>
      <readonly/>
      <alias name="ua-7b2f9c5a-0e3d-4f4a-8c1b-2d5e4f3a6b77"/>
      <address bus="0" controller="0" unit="2" type="drive" target="0"/>
    </disk>
    <disk snapshot="no" type="file" device="disk">
      <target dev="sda" bus="scsi"/>
      <source file="{images}/os.qcow2"/>
      <driver name="qemu" io="threads" type="qcow2" error_policy="stop" cache="none"/>
      <alias name="ua-8c3a0d6b-1f4e-4a5b-9d2c-3e6f5a4b7c88"/>
      <address bus="0" controller="0" unit="0" type="drive" target="0"/>
      <boot order="1"/>
      <serial>8c3a0d6b-1f4e-4a5b-9d2c-3e6f5a4b7c88</serial>
    </disk>
    <disk snapshot="no" type="file" device="disk">
      <target dev="vdb" bus="virtio"/>
      <source file="{images}/data.raw"/>
      <driver name="qemu" io="threads" type="raw" error_policy="stop" cache="none" discard="unmap"/>
      <alias name="ua-9d4b1e7c-2a5f-4b6c-8e3d-4f7a6b5c8d99"/>
      <serial>9d4b1e7c-2a5f-4b6c-8e3d-4f7a6b5c8d99</serial>
      <iotune><total_iops_sec>1000</total_iops_sec></iotune>
    </disk>
    <disk type="block" device="disk" snapshot="no">
      <target dev="vdc" bus="virtio"/>
      <source dev="{images}/block-lv"/>
      <driver name="qemu" io="native" type="raw" error_policy="stop" cache="none"/>
      <alias name="ua-ad5c2f8d-3b6a-4c7d-9f4e-5a8b7c6d9eaa"/>
      <serial>ad5c2f8d-3b6a-4c7d-9f4e-5a8b7c6d9eaa</serial>
    </disk>
  </devices>
  <metadata>
    <ovirt-tune:qos/>
    <ovirt-vm:vm>
      <ovirt-vm:minGuaranteedMemoryMb type="int">4096</ovirt-vm:minGuaranteedMemoryMb>
      <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
      <ovirt-vm:launchPaused>false</ovirt-vm:launchPaused>
      <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:imageID>8c3a0d6b-1f4e-4a5b-9d2c-3e6f5a4b7c88</ovirt-vm:imageID>
      </ovirt-vm:device>
    </ovirt-vm:vm>
  </metadata>
</domain>
"""


def i440fx_desktop(vm_id, images, domain_type="kvm"):
    """An i440fx Windows desktop: an IDE cdrom with an ISO, a qcow2 disk,
    e1000 NIC on a bridge, VNC only, hyperv enlightenments, a pty serial
    console, a USB tablet, an ich6 sound card, a watchdog."""
    return f"""<domain type="{domain_type}">
  <name>win10-desk-{vm_id[:8]}</name>
  <uuid>{vm_id}</uuid>
  <memory unit="MiB">2048</memory>
  <currentMemory unit="MiB">2048</currentMemory>
  <vcpu placement="static">2</vcpu>
  <os>
    <type arch="x86_64" machine="pc-i440fx-rhel7.6.0">hvm</type>
    <bootmenu enable="yes" timeout="10000"/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <hyperv>
      <relaxed state="on"/>
      <vapic state="on"/>
      <spinlocks state="on" retries="8191"/>
      <vpindex state="on"/>
      <synic state="on"/>
      <stimer state="on"/>
      <frequencies state="on"/>
    </hyperv>
  </features>
  <cpu mode="host-passthrough" check="none" migratable="on">
    <topology sockets="1" cores="2" threads="1"/>
  </cpu>
  <clock offset="variable" adjustment="0" basis="utc">
    <timer name="hypervclock" present="yes"/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file="{images}/virtio-win.iso" startupPolicy="optional"/>
      <target dev="hdc" bus="ide"/>
      <readonly/>
      <boot order="2"/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" cache="none" io="threads"/>
      <source file="{images}/os.qcow2"/>
      <target dev="hda" bus="ide"/>
      <boot order="1"/>
    </disk>
    <interface type="bridge">
      <mac address="56:6f:16:a8:00:10"/>
      <source bridge="ovirtmgmt"/>
      <model type="e1000"/>
      <filterref filter="vdsm-no-mac-spoofing"/>
    </interface>
    <serial type="pty">
      <target port="0"/>
    </serial>
    <console type="pty">
      <target type="serial" port="0"/>
    </console>
    <input type="tablet" bus="usb"/>
    <input type="mouse" bus="ps2"/>
    <input type="keyboard" bus="ps2"/>
    <graphics type="vnc" port="-1" autoport="yes">
      <listen type="address" address="0"/>
    </graphics>
    <sound model="ich6"/>
    <video>
      <model type="vga" vram="16384" heads="1" primary="yes"/>
    </video>
    <watchdog model="i6300esb" action="reset"/>
    <memballoon model="none"/>
  </devices>
</domain>
"""


def tiny_vm(vm_id, images, domain_type="test"):
    """The smallest engine-style VM: a raw disk, a NIC, a virtio console,
    a kernel and initrd from the image directory, NUMA tune, a lease."""
    return f"""<domain type="{domain_type}">
  <name>tiny-{vm_id[:8]}</name>
  <uuid>{vm_id}</uuid>
  <memory unit="MiB">256</memory>
  <vcpu>1</vcpu>
  <numatune><memory mode="interleave" nodeset="0"/></numatune>
  <os>
    <type arch="x86_64">hvm</type>
    <kernel>{images}/vmlinuz</kernel>
    <initrd>{images}/initrd.img</initrd>
    <cmdline>console=ttyS0 root=/dev/vda ro</cmdline>
  </os>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"/>
      <source file="{images}/data.raw"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <interface type="network">
      <source network="default"/>
      <model type="virtio"/>
    </interface>
    <console type="pty"><target type="virtio" port="0"/></console>
    <rng model="virtio"><rate bytes="1024" period="1000"/>
      <backend model="random">/dev/random</backend></rng>
    <lease>
      <lockspace>sd-1</lockspace>
      <key>{vm_id}</key>
      <target path="{images}/leases" offset="1048576"/>
    </lease>
  </devices>
</domain>
"""


ENGINE_XMLS = {"q35-server": q35_vm, "i440fx-desktop": i440fx_desktop,
               "tiny": tiny_vm}


def make_images(images):
    """The files the engine XMLs name, in `images`."""
    os.makedirs(f"{images}/channels", exist_ok=True)
    for name in ("data.raw", "block-lv", "virtio-win.iso", "vmlinuz",
                 "initrd.img", "leases"):
        with open(f"{images}/{name}", "wb") as f:
            f.truncate(1 << 20)
    qcow2(f"{images}/os.qcow2")


def vm_images(images, vm_id):
    """A VM's own set of the files the engine XMLs name, in `images`/vm_id,
    made from the set make_images left in `images`: an engine gives each
    VM disks of its own, and a disk one VM writes no other may name."""
    own = f"{images}/{vm_id}"
    os.makedirs(f"{own}/channels")
    for name in ("data.raw", "block-lv", "virtio-win.iso", "vmlinuz",
                 "initrd.img", "leases"):
        with open(f"{own}/{name}", "wb") as f:
            f.truncate(1 << 20)
    shutil.copyfile(f"{images}/os.qcow2", f"{own}/os.qcow2")
    return own


def qcow2(path, backing=None, backing_fmt="raw", data_file=None, size="1M",
          unsafe=False):
    """A qcow2 image made by qemu-img (backing and data file as given,
    unsafe: not opened nor checked by qemu-img)."""
    options = []
    if data_file is not None:
        options += ["-o", f"data_file={data_file}"]
    command = ["qemu-img", "create", "-q", "-f", "qcow2", *options]
    if backing is not None:
        command += ["-b", backing, "-F", backing_fmt]
        if unsafe:
            command += ["-u"]
    subprocess.run([*command, path, size], check=True, capture_output=True)
    return path


def vmdk_descriptor(extent):
    """A vmdk descriptor file whose one extent is the host file `extent`:
    QEMU's vmdk driver opens it as the disk's data."""
    return ("# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
            "parentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n"
            f"RW 2048 FLAT \"{extent}\" 0\n")
