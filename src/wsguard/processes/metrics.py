"""Parse the Prometheus text format into flat samples keyed the way tests read them."""

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, float]:
    """Return ``{'name': value, 'name{label="v"}': value}`` for every sample in ``text``.

    Labels are sorted so that a key is stable; a sample without labels is keyed by its bare name.
    """
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{key}="{sample.labels[key]}"' for key in sorted(sample.labels))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
            else:
                samples[sample.name] = sample.value
    return samples
