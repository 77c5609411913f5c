"""Data reweighting methods: instance weighters, mixture policies, stage selectors."""
