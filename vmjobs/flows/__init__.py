"""The flows, one job class per mode and one module each: the four that
start a VM, staged until their commit (StartupJob: create, recover,
restore, incoming), and the two that claim a public VM and take it away
(ClaimJob: outgoing, and hibernate, restore's inverse); a migration's
two ends are named by direction (incoming, outgoing).

    create     prepare -> define -> start -> verify -> commit
    recover    read-domain -> inspect (-> wait-arriving, wait-leaving
               or wait-saving) -> commit
               (or left-stopped, migrated-away)
    restore    check-file -> read-domain -> prepare -> restore -> persist
               -> verify -> commit
    incoming   prepare -> wait-arrival -> persist -> commit
               (job_type migration-destination)
    outgoing   wait-slot -> prepare -> prepare-destination -> migrate
               -> confirm-destination -> commit
               (job_type migration-source)
    hibernate  prepare -> save -> undefine -> commit
"""

from .create import CreateJob
from .hibernate import HibernateJob
from .incoming import MigrationDestinationJob
from .outgoing import MigrationSourceJob, OutgoingSlots
from .recover import RecoverJob
from .restore import RestoreJob

__all__ = ["CreateJob", "HibernateJob", "MigrationDestinationJob",
           "MigrationSourceJob", "OutgoingSlots", "RecoverJob", "RestoreJob"]
