"""CirCor label vocabularies and the per-patient label record.

Spellings are exactly those of the CirCor `.txt` headers and `training_data.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MURMUR_CLASSES = ("Present", "Unknown", "Absent")
LOCATIONS = ("AV", "PV", "TV", "MV")

# The 11 murmur features, in the order of `murmurscope predict`'s CSV columns.
FEATURES: dict[str, tuple[str, ...]] = {
    "most_audible_location": LOCATIONS,
    "systolic_timing": ("Early-systolic", "Mid-systolic", "Late-systolic", "Holosystolic"),
    "systolic_shape": ("Crescendo", "Decrescendo", "Diamond", "Plateau"),
    "systolic_grading": ("I/VI", "II/VI", "III/VI"),
    "systolic_pitch": ("Low", "Medium", "High"),
    "systolic_quality": ("Blowing", "Harsh", "Musical"),
    "diastolic_timing": ("Early-diastolic", "Mid-diastolic", "Holodiastolic"),
    "diastolic_shape": ("Crescendo", "Decrescendo", "Diamond", "Plateau"),
    "diastolic_grading": ("I/IV", "II/IV", "III/IV"),
    "diastolic_pitch": ("Low", "Medium", "High"),
    "diastolic_quality": ("Blowing", "Harsh", "Musical"),
}

# Header line in the patient `.txt` for each label field.
HEADER_KEYS = {
    "murmur": "Murmur",
    "murmur_locations": "Murmur locations",
    "most_audible_location": "Most audible location",
    "systolic_timing": "Systolic murmur timing",
    "systolic_shape": "Systolic murmur shape",
    "systolic_grading": "Systolic murmur grading",
    "systolic_pitch": "Systolic murmur pitch",
    "systolic_quality": "Systolic murmur quality",
    "diastolic_timing": "Diastolic murmur timing",
    "diastolic_shape": "Diastolic murmur shape",
    "diastolic_grading": "Diastolic murmur grading",
    "diastolic_pitch": "Diastolic murmur pitch",
    "diastolic_quality": "Diastolic murmur quality",
}


@dataclass(frozen=True)
class PatientLabels:
    """Expert labels of one patient; a feature is None where CirCor writes `nan`."""

    murmur: str
    murmur_locations: tuple[str, ...] = ()
    most_audible_location: str | None = None
    systolic_timing: str | None = None
    systolic_shape: str | None = None
    systolic_grading: str | None = None
    systolic_pitch: str | None = None
    systolic_quality: str | None = None
    diastolic_timing: str | None = None
    diastolic_shape: str | None = None
    diastolic_grading: str | None = None
    diastolic_pitch: str | None = None
    diastolic_quality: str | None = None

    def feature(self, name: str) -> str | None:
        return getattr(self, name)

    def header_lines(self) -> list[str]:
        lines = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "murmur_locations":
                value = "+".join(value) if value else None
            lines.append(f"#{HEADER_KEYS[f.name]}: {value if value is not None else 'nan'}")
        return lines


@dataclass(frozen=True)
class Demographics:
    age: str | None = None
    sex: str | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    pregnant: bool | None = None
    campaign: str | None = None
    additional_id: str | None = None

# Columns of `murmurscope predict`'s CSV and of every evaluation run's predictions.csv.
PREDICTION_COLUMNS = ("patient_id", "murmur", "p_present", "p_unknown", "p_absent", *FEATURES)
