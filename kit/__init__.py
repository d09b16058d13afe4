"""The device run kit: carry the project, its missing wheels and the data to an offline box.

``python kit/build.py`` builds the bundle here; ``run.sh OUT`` inside the unpacked bundle
installs it offline and runs the benchmarks there; ``python kit/collect.py`` adds the
result files it brought back to ``results/``. See docs/device-kit.md.
"""
