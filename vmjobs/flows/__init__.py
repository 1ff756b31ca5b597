"""The startup flows, one module each, and hibernation (restore's inverse).

    create     prepare -> define -> start -> verify -> commit
    recover    read-metadata -> inspect -> commit (or left-stopped)
    restore    check-file -> read-domain -> prepare -> restore -> persist
               -> verify -> commit
    migration  prepare -> wait-arrival -> persist -> commit
    hibernate  prepare -> save -> undefine -> commit
    migration-source  wait-slot -> prepare -> prepare-destination -> migrate
               -> commit
"""

from .create import CreateJob
from .hibernate import HibernateJob
from .migration import MigrationDestinationJob
from .migration_source import MigrationSourceJob, OutgoingSlots
from .recover import RecoverJob
from .restore import RestoreJob

__all__ = ["CreateJob", "HibernateJob", "MigrationDestinationJob",
           "MigrationSourceJob", "OutgoingSlots", "RecoverJob", "RestoreJob"]
