"""The licence statements agree with each other: LICENSE, package.xml, setup.py, CITATION.cff, model card."""

import re
import xml.etree.ElementTree as ET

import yaml

from conftest import REPO


def test_one_licence_everywhere():
    text = (REPO / 'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text and 'END OF TERMS AND CONDITIONS' in text
    assert ET.parse(REPO / 'package.xml').getroot().findtext('license') == 'Apache-2.0'
    assert re.search(r"license='Apache-2\.0'", (REPO / 'setup.py').read_text())
    assert yaml.safe_load((REPO / 'CITATION.cff').read_text())['license'] == 'Apache-2.0'
    assert 'Apache-2.0' in (REPO / 'models' / 'README.md').read_text()


def test_citation_file_is_cff_1_2_with_the_methods_it_builds_on():
    cff = yaml.safe_load((REPO / 'CITATION.cff').read_text())
    assert cff['cff-version'] == '1.2.0'
    for key in ('message', 'title', 'authors', 'type', 'version'):  # CFF 1.2 requires the first three
        assert cff[key], key
    titles = {ref['title'] for ref in cff['references']}
    for needle in ('ACR', 'Collision-Aware Factorized Refinements', 'Embodied Hands', '1€ Filter'):
        assert any(needle in t for t in titles), needle
    for ref in cff['references']:
        assert ref['type'] in ('article', 'conference-paper', 'software')
        assert ref['authors'] and all('family-names' in a or 'name' in a for a in ref['authors'])
        assert isinstance(ref['year'], int)


def test_readme_states_the_smplx_licence_where_it_binds():
    readme = (REPO / 'README.md').read_text()
    section = readme[readme.index('## Licences') :]
    section = section[: section.index('\n## ', 5)]
    for needle in ('Apache-2.0', 'non-commercial', 'HAND_RECON_SKINNING', 'synthetic', 'MANO'):
        assert needle in section, needle
