// The pure placement core: feasibility checks, ranking, the reconciler and
// `schedule(eval, snapshot) -> Plan`. It imports DroverModel only and does no I/O.
// It arrives with the scheduler; the module exists now so that the module table is fixed.
import DroverModel
