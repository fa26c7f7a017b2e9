"""The worker's static group membership id (workers.settings): stable, distinct, overridable."""

from __future__ import annotations

from pathlib import Path

from workers.broker.cluster import EMBEDDED_CLUSTER_ID, static_membership_works
from workers.settings import Settings, default_worker_id


def test_the_default_id_is_stable_per_data_dir_and_distinct_between_them(tmp_path: Path) -> None:
    a = Settings.from_env({"KAIZEN_DATA_DIR": str(tmp_path / "a")})
    again = Settings.from_env({"KAIZEN_DATA_DIR": str(tmp_path / "a")})
    b = Settings.from_env({"KAIZEN_DATA_DIR": str(tmp_path / "b")})
    assert a.group_instance_id(6066) == again.group_instance_id(6066)
    assert a.group_instance_id(6066) == default_worker_id(tmp_path / "a", 6066)
    assert a.group_instance_id(6066) != b.group_instance_id(6066)
    # Faust refuses an assignment made for another web URL: another port, another member
    assert a.group_instance_id(6066) != a.group_instance_id(6067)


def test_kaizen_worker_id_and_the_flag_override_the_default(tmp_path: Path) -> None:
    env = {"KAIZEN_DATA_DIR": str(tmp_path), "KAIZEN_WORKER_ID": " worker-7 "}
    settings = Settings.from_env(env)
    assert settings.group_instance_id(6066) == "worker-7"
    assert settings.override(worker_id="w8").group_instance_id(6066) == "w8"
    assert settings.override(worker_id=None).group_instance_id(6066) == "worker-7"


def test_static_membership_is_off_on_the_embedded_broker_only() -> None:
    assert not static_membership_works(EMBEDDED_CLUSTER_ID)
    assert static_membership_works("MkU3OEVBNTcwNTJENDM2Qk")  # an Apache Kafka cluster id
    assert static_membership_works(None)  # unknown: the engine the project is proven on
