from text_unidecode import unidecode  # from requirements.txt, as the Framework packages it


def shout(text):
    return unidecode(text).upper() + "!"
