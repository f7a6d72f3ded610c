//! DSDT AML: processor devices, the CPU hot-plug mechanism, the sleep states
//! and the power button.
//!
//! Namespace generated (ASL pseudo-code; `N` = number of slots):
//!
//! ```text
//! Name (\_S5_, Package () { 5, 0, 0, 0 })  // only with power: SLP_TYP 5
//! Scope (\_SB) {
//!   Device (CPUS) {                       // processor container
//!     Name (_HID, "ACPI0010")  Name (_CID, EisaId ("PNP0A05"))
//!     // only with hot-plug:
//!     OperationRegion (PRST, SystemIO, io_base, 12)
//!     Field (PRST, DWordAcc, NoLock, WriteAsZeros) { CSEL, 32 }
//!     Field (PRST, ByteAcc, NoLock, WriteAsZeros) {
//!         Offset (4), CPEN, 1, CINS, 1, CRMV, 1, CEJF, 1 }
//!     Mutex (CLCK, 0)
//!     Method (CSTA, 1) { select Arg0; Return (CPEN ? 0xF : 0) }
//!     Method (CEJ0, 1) { select Arg0; CEJF = 1 }
//!     Method (CTFY, 2) { If (Arg0 == i) { Notify (Ci, Arg1) } ... }
//!     Method (CSCN, 0) { for each slot: select it;
//!         if CINS { CTFY (slot, 1 /* device check */); CINS = 1 /* ack */ }
//!         elif CRMV { CTFY (slot, 3 /* eject request */); CRMV = 1 /* ack */ } }
//!     Device (C000) { Name (_HID, "ACPI0007") Name (_UID, 0) [Name (_PXM, node)]
//!         Method (_STA) { Return (CSTA (0)) }       // static 0xF/0 without hot-plug
//!         Name (_MAT, Buffer { MADT entry, Enabled })
//!         Method (_EJ0, 1) { CEJ0 (0) } }          // only with hot-plug
//!     ...
//!   }
//!   Device (PWRB) {                       // only with a power button
//!     Name (_HID, EisaId ("PNP0C0C")) Name (_UID, 0) }
//!   Device (GED_) {                       // with hot-plug or a power button
//!     Name (_HID, "ACPI0013") Name (_UID, 0)
//!     Name (_CRS, ResourceTemplate () {   // one descriptor per event
//!         Interrupt (Consumer, Edge, ActiveHigh, Exclusive) { hotplug_gsi }
//!         Interrupt (Consumer, Edge, ActiveHigh, Exclusive) { button_gsi } })
//!     Method (_EVT, 1, Serialized) {      // Linux passes the GSI that fired
//!         If (Arg0 == hotplug_gsi) { \_SB.CPUS.CSCN () }
//!         If (Arg0 == button_gsi) { Notify (\_SB.PWRB, 0x80) } }
//!   }
//! }
//! ```

use acpi_tables::aml::{
    Acquire, Add, Arg, BufferData, Device, EISAName, Else, Equal, Field, FieldAccessType,
    FieldEntry, FieldLockRule, FieldUpdateRule, If, Interrupt, LessThan, Local, Method, MethodCall,
    Mutex, Name, Notify, OpRegion, OpRegionSpace, Package, Path, Release, ResourceTemplate, Return,
    Scope, Store, While, IO, ONE, ZERO,
};
use acpi_tables::{Aml, AmlSink};

use super::pm1::{SLP_TYP_S3, SLP_TYP_S5 as PM1_SLP_TYP_S5};
use super::power::{POWER_BUTTON_NOTIFY, SLP_TYP_S5};
use super::tables::{processor_structure, MADT_ENABLED};
use super::{AcpiConfig, CpuHotplugConfig, IsaSerialConfig};

/// Size of the hot-plug I/O port block.
pub const HOTPLUG_IO_LEN: u16 = 12;

/// Pre-encoded AML bytes, so per-CPU objects can be built in a loop.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn encode(aml: &dyn Aml) -> Raw {
    let mut v = Vec::new();
    aml.to_aml_bytes(&mut v);
    Raw(v)
}

/// The 4-character device name of slot `uid` (`C000`..`CFFF`).
pub fn cpu_device_name(uid: usize) -> String {
    format!("C{uid:03X}")
}

const CPUS: &str = "\\_SB_.CPUS";
const PWRB: &str = "\\_SB_.PWRB";
const LOCK: &str = "\\_SB_.CPUS.CLCK";

fn hotplug_methods(hp: &CpuHotplugConfig, slots: usize) -> Vec<Raw> {
    let base = u64::from(hp.io_base);
    let len = u64::from(HOTPLUG_IO_LEN);
    let mut out = vec![
        encode(&OpRegion::new(
            "PRST".into(),
            OpRegionSpace::SystemIO,
            &base,
            &len,
        )),
        encode(&Field::new(
            "PRST".into(),
            FieldAccessType::DWord,
            FieldLockRule::NoLock,
            FieldUpdateRule::WriteAsZeroes,
            vec![FieldEntry::Named(*b"CSEL", 32)],
        )),
        encode(&Field::new(
            "PRST".into(),
            FieldAccessType::Byte,
            FieldLockRule::NoLock,
            FieldUpdateRule::WriteAsZeroes,
            vec![
                FieldEntry::Reserved(32),
                FieldEntry::Named(*b"CPEN", 1),
                FieldEntry::Named(*b"CINS", 1),
                FieldEntry::Named(*b"CRMV", 1),
                FieldEntry::Named(*b"CEJF", 1),
                FieldEntry::Reserved(4),
            ],
        )),
        encode(&Mutex::new("CLCK".into(), 0)),
    ];

    // CSTA(uid): 0xF when the selected slot is enabled, else 0.
    let sel = Path::new("CSEL");
    let enabled = Path::new("CPEN");
    let sta_on = 0xfu8;
    out.push(encode(&Method::new(
        "CSTA".into(),
        1,
        true,
        vec![
            &Acquire::new(LOCK.into(), 0xffff),
            &Store::new(&sel, &Arg(0)),
            &Store::new(&Local(0), &ZERO),
            &If::new(
                &Equal::new(&enabled, &ONE),
                vec![&Store::new(&Local(0), &sta_on)],
            ),
            &Release::new(LOCK.into()),
            &Return::new(&Local(0)),
        ],
    )));

    // CEJ0(uid): tell the VMM the guest has offlined the slot.
    let eject = Path::new("CEJF");
    out.push(encode(&Method::new(
        "CEJ0".into(),
        1,
        true,
        vec![
            &Acquire::new(LOCK.into(), 0xffff),
            &Store::new(&sel, &Arg(0)),
            &Store::new(&eject, &ONE),
            &Release::new(LOCK.into()),
        ],
    )));

    // CTFY(uid, event): Notify the matching processor device.
    let uids: Vec<u32> = (0..slots as u32).collect();
    let targets: Vec<Path> = (0..slots)
        .map(|i| Path::new(&format!("{CPUS}.{}", cpu_device_name(i))))
        .collect();
    let notifies: Vec<Notify> = targets.iter().map(|p| Notify::new(p, &Arg(1))).collect();
    let equals: Vec<Equal> = uids.iter().map(|u| Equal::new(&Arg(0), u)).collect();
    let ifs: Vec<If> = equals
        .iter()
        .zip(&notifies)
        .map(|(eq, n)| If::new(eq, vec![n]))
        .collect();
    let body: Vec<&dyn Aml> = ifs.iter().map(|i| i as &dyn Aml).collect();
    out.push(encode(&Method::new("CTFY".into(), 2, true, body)));

    // CSCN(): walk every slot, deliver pending insert/remove events.
    let inserting = Path::new("CINS");
    let removing = Path::new("CRMV");
    let count = slots as u32;
    let device_check = 1u8;
    let eject_request = 3u8;
    let notify_insert = MethodCall::new(
        format!("{CPUS}.CTFY").as_str().into(),
        vec![&Local(0), &device_check],
    );
    let notify_remove = MethodCall::new(
        format!("{CPUS}.CTFY").as_str().into(),
        vec![&Local(0), &eject_request],
    );
    out.push(encode(&Method::new(
        "CSCN".into(),
        0,
        true,
        vec![
            &Acquire::new(LOCK.into(), 0xffff),
            &Store::new(&Local(0), &ZERO),
            &While::new(
                &LessThan::new(&Local(0), &count),
                vec![
                    &Store::new(&sel, &Local(0)),
                    &If::new(
                        &Equal::new(&inserting, &ONE),
                        vec![&notify_insert, &Store::new(&inserting, &ONE)],
                    ),
                    &Else::new(vec![&If::new(
                        &Equal::new(&removing, &ONE),
                        vec![&notify_remove, &Store::new(&removing, &ONE)],
                    )]),
                    &Add::new(&Local(0), &Local(0), &ONE),
                ],
            ),
            &Release::new(LOCK.into()),
        ],
    )));
    out
}

fn cpu_device(config: &AcpiConfig, uid: usize) -> Raw {
    let cpu = &config.cpus[uid];
    let hid = Name::new("_HID".into(), &"ACPI0007");
    let uid_val = uid as u32;
    let uid_name = Name::new("_UID".into(), &uid_val);
    let node = cpu.node;
    let pxm = Name::new("_PXM".into(), &node);
    let mat = BufferData::new(processor_structure(uid, cpu, MADT_ENABLED));
    let mat_name = Name::new("_MAT".into(), &mat);
    let sta_value: u8 = if cpu.present { 0xf } else { 0 };
    let sta_static = Name::new("_STA".into(), &sta_value);
    let csta = MethodCall::new(format!("{CPUS}.CSTA").as_str().into(), vec![&uid_val]);
    let ret = Return::new(&csta);
    let sta_method = Method::new("_STA".into(), 0, false, vec![&ret]);
    let cej0 = MethodCall::new(format!("{CPUS}.CEJ0").as_str().into(), vec![&uid_val]);
    let ej0 = Method::new("_EJ0".into(), 1, false, vec![&cej0]);

    let mut children: Vec<&dyn Aml> = vec![&hid, &uid_name];
    if config.numa.is_some() {
        children.push(&pxm);
    }
    if config.hotplug.is_some() {
        children.push(&sta_method);
    } else {
        children.push(&sta_static);
    }
    children.push(&mat_name);
    if config.hotplug.is_some() {
        children.push(&ej0);
    }
    encode(&Device::new(cpu_device_name(uid).as_str().into(), children))
}

/// The DSDT body (AML without the table header).
pub(crate) fn dsdt_aml(config: &AcpiConfig) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &"ACPI0010");
    let cid_id = EISAName::new("PNP0A05");
    let cid = Name::new("_CID".into(), &cid_id);
    let methods = config
        .hotplug
        .as_ref()
        .map(|hp| hotplug_methods(hp, config.cpus.len()))
        .unwrap_or_default();
    let devices: Vec<Raw> = (0..config.cpus.len())
        .map(|uid| cpu_device(config, uid))
        .collect();
    let mut children: Vec<&dyn Aml> = vec![&hid, &cid];
    children.extend(methods.iter().map(|m| m as &dyn Aml));
    children.extend(devices.iter().map(|d| d as &dyn Aml));
    let container = Device::new("CPUS".into(), children);

    let mut sb: Vec<&dyn Aml> = vec![&container];
    let pwrb = power_button(config);
    if let Some(p) = &pwrb {
        sb.push(p);
    }
    let ged = ged(config);
    if let Some(g) = &ged {
        sb.push(g);
    }
    let com1 = config.serial.as_ref().map(serial_device);
    if let Some(c) = &com1 {
        sb.push(c);
    }
    let mut out = Vec::new();
    if config.power.is_some() {
        sleep_states().to_aml_bytes(&mut out);
    }
    Scope::new("\\_SB_".into(), sb).to_aml_bytes(&mut out);
    out
}

/// `Name (\_S5_, Package () { 5, 0, 0, 0 })`: soft off is the only sleep state, with
/// `SLP_TYP` [`SLP_TYP_S5`] for the sleep control register.
fn sleep_states() -> Raw {
    let typ = SLP_TYP_S5;
    let pkg = Package::new(vec![&typ, &ZERO, &ZERO, &ZERO]);
    encode(&Name::new("\\_S5_".into(), &pkg))
}

/// `Name (\_S3_, Package () { 1, 1, 0, 0 })` and `Name (\_S5_, Package () { 0, 0, 0,
/// 0 })`: the sleep states of the PM1 control block ([`super::pm1`], QEMU's values).
pub(crate) fn pm1_sleep_states() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, typ) in [("\\_S3_", SLP_TYP_S3), ("\\_S5_", PM1_SLP_TYP_S5)] {
        let pkg = Package::new(vec![&typ, &typ, &ZERO, &ZERO]);
        Name::new(name.into(), &pkg).to_aml_bytes(&mut out);
    }
    out
}

/// `Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, 0) }`, when the
/// power button is configured.
fn power_button(config: &AcpiConfig) -> Option<Raw> {
    config.power.and_then(|p| p.button_gsi)?;
    let id = EISAName::new("PNP0C0C");
    let hid = Name::new("_HID".into(), &id);
    let uid = Name::new("_UID".into(), &ZERO);
    Some(encode(&Device::new("PWRB".into(), vec![&hid, &uid])))
}

/// `Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, 0) Name (_CRS,
/// ResourceTemplate () { Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi}
/// IO (Decode16, base, base, 1, 8) }) }`.
fn serial_device(serial: &IsaSerialConfig) -> Raw {
    let id = EISAName::new("PNP0501");
    let hid = Name::new("_HID".into(), &id);
    let uid = Name::new("_UID".into(), &ZERO);
    let irq = Interrupt::new(true, true, false, false, serial.gsi);
    let ports = IO::new(serial.io_base, serial.io_base, 1, 8);
    let resources = ResourceTemplate::new(vec![&irq, &ports]);
    let crs = Name::new("_CRS".into(), &resources);
    encode(&Device::new("COM1".into(), vec![&hid, &uid, &crs]))
}

/// The Generic Event Device: one edge, active-high interrupt per event (CPU hot-plug,
/// power button) and an `_EVT` that dispatches on the GSI Linux passes as `Arg0`.
/// `None` when neither event is configured.
fn ged(config: &AcpiConfig) -> Option<Raw> {
    let hotplug_gsi = config.hotplug.map(|hp| hp.ged_gsi);
    let button_gsi = config.power.and_then(|p| p.button_gsi);
    if hotplug_gsi.is_none() && button_gsi.is_none() {
        return None;
    }
    let hid = Name::new("_HID".into(), &"ACPI0013");
    let uid = Name::new("_UID".into(), &ZERO);
    let irqs: Vec<Interrupt> = hotplug_gsi
        .iter()
        .chain(button_gsi.iter())
        .map(|&gsi| Interrupt::new(true, true, false, false, gsi))
        .collect();
    let crs_tpl = ResourceTemplate::new(irqs.iter().map(|i| i as &dyn Aml).collect());
    let crs = Name::new("_CRS".into(), &crs_tpl);

    let scan = MethodCall::new(format!("{CPUS}.CSCN").as_str().into(), vec![]);
    let hotplug_gsi_val = hotplug_gsi.unwrap_or(0);
    let hotplug_eq = Equal::new(&Arg(0), &hotplug_gsi_val);
    let on_hotplug = If::new(&hotplug_eq, vec![&scan]);
    let pwrb = Path::new(PWRB);
    let pressed = POWER_BUTTON_NOTIFY;
    let notify = Notify::new(&pwrb, &pressed);
    let button_gsi_val = button_gsi.unwrap_or(0);
    let button_eq = Equal::new(&Arg(0), &button_gsi_val);
    let on_button = If::new(&button_eq, vec![&notify]);
    let mut body: Vec<&dyn Aml> = Vec::new();
    if hotplug_gsi.is_some() {
        body.push(&on_hotplug);
    }
    if button_gsi.is_some() {
        body.push(&on_button);
    }
    let evt = Method::new("_EVT".into(), 1, true, body);
    Some(encode(&Device::new(
        "GED_".into(),
        vec![&hid, &uid, &crs, &evt],
    )))
}
